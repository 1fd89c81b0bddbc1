// The runs table: server-side paging and filters, refreshed every two seconds; each
// page's verdicts come in one /api/verdicts request (a finished run's is kept; a finished
// sweep member's only for a while, since its relative verdict moves with its siblings).
import { api, connectionBanner, el, formatNumber, formatTime } from "./api.js";
import { isFinal, statusBadge, statusOptions } from "./status.js";
import { verdictCell } from "./verdicts.js";

const PAGE_SIZE = 50;
const REFRESH_MS = 2000;
const state = { offset: 0, status: "", name: "", selected: new Set(), total: 0 };

const body = document.querySelector("#runs tbody");
const empty = document.querySelector("#empty");
const compareButton = document.querySelector("#compare");
const selectAll = document.querySelector("#select-all");
const pageInfo = document.querySelector("#page-info");
const banner = connectionBanner();
let timer = null;
let generation = 0;
const SIBLINGS_MS = 30000;
const finalVerdicts = new Map(); // run id → { verdict, at } of a run that no longer trains

function keptVerdict(run) {
  const kept = finalVerdicts.get(run.id);
  if (!kept) return undefined;
  if (run.sweep_id && Date.now() - kept.at > SIBLINGS_MS) return undefined;
  return kept.verdict;
}

async function loadVerdicts(runs, mine) {
  const wanted = runs.filter((run) => !keptVerdict(run)).map((run) => run.id);
  let fetched = {};
  if (wanted.length) {
    try {
      fetched = (await api(`/api/verdicts?ids=${wanted.join(",")}`)).verdicts;
    } catch {
      return; // the next refresh tries again
    }
  }
  if (mine !== generation) return;
  for (const run of runs) {
    const kept = keptVerdict(run);
    const verdict = kept ?? fetched[String(run.id)];
    if (verdict && !kept && isFinal(run.status)) finalVerdicts.set(run.id, { verdict, at: Date.now() });
    const cell = body.querySelector(`tr[data-id="${run.id}"] td.verdict`);
    if (cell) cell.replaceChildren(verdictCell(verdict));
  }
}

function progress(run) {
  const total = run.epochs_total || 1;
  const width = Math.min(100, (100 * run.epochs_done) / total);
  return el("span", { class: "progress" },
    el("span", { class: "bar" }, el("span", { style: `width:${width}%` })),
    `${run.epochs_done} / ${run.epochs_total}`);
}

async function act(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    alert(error.message);
  }
  await refresh();
}

function actions(run) {
  const cell = el("div", { class: "actions" },
    el("a", { class: "button secondary small", href: `/new?clone=${run.id}`, title: "Open the form with this spec" }, "Clone"));
  if (run.status === "queued" || run.status === "running") {
    cell.append(el("button", {
      type: "button", class: "danger small", dataset: { action: "cancel" },
      onclick: (event) => act(event.target, () => api(`/api/experiments/${run.id}/cancel`, { method: "POST" })),
    }, "Cancel"));
  } else {
    cell.append(el("button", {
      type: "button", class: "danger small", dataset: { action: "delete" },
      onclick: (event) => {
        if (!confirm(`Delete run #${run.id} and its metrics?`)) return;
        act(event.target, () => api(`/api/experiments/${run.id}`, { method: "DELETE" }));
      },
    }, "Delete"));
  }
  return cell;
}

function row(run) {
  const box = el("input", {
    type: "checkbox", checked: state.selected.has(run.id), "aria-label": `Select run ${run.id}`,
    onchange: (event) => {
      if (event.target.checked) state.selected.add(run.id);
      else state.selected.delete(run.id);
      updateCompare();
    },
  });
  const name = el("a", { href: `/runs/${run.id}`, title: run.name }, run.name);
  return el("tr", { dataset: { id: run.id, status: run.status } },
    el("td", {}, box),
    el("td", { class: "num" }, run.id),
    el("td", { class: "name" }, name),
    el("td", {}, statusBadge(run.status)),
    el("td", {}, progress(run)),
    el("td", { class: "num" }, formatNumber(run.best_val_data_loss)),
    el("td", { class: "verdict" }, verdictCell(keptVerdict(run))),
    el("td", {}, run.regularization),
    el("td", {}, run.device ?? ""),
    el("td", { class: "time" }, formatTime(run.created_at)),
    el("td", {}, actions(run)));
}

function updateCompare() {
  const count = state.selected.size;
  compareButton.disabled = count < 1;
  compareButton.textContent = count ? `Compare selected (${count})` : "Compare selected";
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const params = new URLSearchParams({ limit: PAGE_SIZE, offset: state.offset });
  if (state.status) params.set("status", state.status);
  if (state.name) params.set("name", state.name);
  try {
    const page = await api(`/api/experiments?${params}`);
    if (mine !== generation) return; // a newer request is on its way
    banner.set(true);
    state.total = page.total;
    body.replaceChildren(...page.items.map(row));
    loadVerdicts(page.items, mine);
    empty.hidden = page.items.length > 0;
    const first = page.total ? state.offset + 1 : 0;
    pageInfo.textContent = `${first}–${state.offset + page.items.length} of ${page.total}`;
    document.querySelector("#previous").disabled = state.offset === 0;
    document.querySelector("#next").disabled = state.offset + PAGE_SIZE >= page.total;
    selectAll.checked = page.items.length > 0 && page.items.every((run) => state.selected.has(run.id));
  } catch {
    banner.set(false);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

const statusFilter = document.querySelector("#status-filter");
statusOptions(statusFilter);
statusFilter.addEventListener("change", (event) => {
  state.status = event.target.value;
  state.offset = 0;
  refresh();
});
let typing = null;
document.querySelector("#name-filter").addEventListener("input", (event) => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    state.name = event.target.value.trim();
    state.offset = 0;
    refresh();
  }, 250);
});
document.querySelector("#previous").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE_SIZE);
  refresh();
});
document.querySelector("#next").addEventListener("click", () => {
  state.offset += PAGE_SIZE;
  refresh();
});
selectAll.addEventListener("change", () => {
  for (const tr of body.querySelectorAll("tr")) {
    const id = Number(tr.dataset.id);
    if (selectAll.checked) state.selected.add(id);
    else state.selected.delete(id);
    tr.querySelector("input[type=checkbox]").checked = selectAll.checked;
  }
  updateCompare();
});
compareButton.addEventListener("click", () => {
  const ids = [...state.selected].sort((a, b) => a - b);
  location.href = ids.length === 1 ? `/runs/${ids[0]}` : `/compare?ids=${ids.join(",")}`;
});

updateCompare();
refresh();
