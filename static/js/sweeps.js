// The sweeps list: newest first, each with its runs' progress; refreshed while any is live.
import { api, connectionBanner, el, formatNumber, formatTime } from "./api.js";
import { isFinal, statusBadge } from "./status.js";

const PAGE_SIZE = 50;
const REFRESH_MS = 2000;
const state = { offset: 0, total: 0 };
const banner = connectionBanner();
let timer = null;

function swept(sweep) {
  if (!sweep.axes.length) return el("span", { class: "muted" }, `seed repeats × ${sweep.seeds}`);
  return el("span", {}, sweep.axes.map((axis) => el("code", { class: "axis" }, axis.path, " ")),
    el("span", { class: "muted" }, ` ${sweep.mode}${sweep.seeds > 1 ? ` · ${sweep.seeds} seeds` : ""}`));
}

function counts(sweep) {
  return el("span", { class: "sweep-counts" },
    Object.entries(sweep.counts).map(([status, count]) => el("span", {}, statusBadge(status), ` ${count}`)));
}

function row(sweep) {
  const done = Object.entries(sweep.counts)
    .filter(([status]) => isFinal(status)).reduce((sum, [, count]) => sum + count, 0);
  return el("tr", { dataset: { id: sweep.id } },
    el("td", { class: "num" }, sweep.id),
    el("td", { class: "name" }, el("a", { href: `/sweeps/${sweep.id}` }, sweep.name)),
    el("td", {}, swept(sweep)),
    el("td", {}, `${done} / ${sweep.experiment_ids.length} done`),
    el("td", {}, counts(sweep)),
    el("td", { class: "num" }, formatNumber(sweep.best_val_data_loss)),
    el("td", { class: "time" }, formatTime(sweep.created_at)));
}

async function refresh() {
  clearTimeout(timer);
  try {
    const page = await api(`/api/sweeps?limit=${PAGE_SIZE}&offset=${state.offset}`);
    banner.set(true);
    state.total = page.total;
    document.querySelector("#sweeps tbody").replaceChildren(...page.items.map(row));
    document.querySelector("#empty").hidden = page.total > 0;
    const last = Math.min(state.offset + PAGE_SIZE, page.total);
    document.querySelector("#page-info").textContent =
      page.total ? `${state.offset + 1}–${last} of ${page.total}` : "";
    document.querySelector("#previous").disabled = state.offset === 0;
    document.querySelector("#next").disabled = last >= page.total;
    const live = page.items.some((sweep) => Object.entries(sweep.counts).some(([status, count]) => count && !isFinal(status)));
    if (live) timer = setTimeout(refresh, REFRESH_MS);
  } catch (error) {
    if (error.status === undefined) banner.set(false);
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

document.querySelector("#previous").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE_SIZE);
  refresh();
});
document.querySelector("#next").addEventListener("click", () => {
  state.offset += PAGE_SIZE;
  refresh();
});
refresh();
