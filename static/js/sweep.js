// One sweep: the U-shaped path of each swept setting (the slice through the best point, or
// the mean over the other settings), a heat map for two settings, parallel coordinates for
// more, the best point by its mean over seeds and whether it beats seed noise, and its
// runs. Polls the sweep every two seconds while any run is unfinished.
import { api, connectionBanner, el, formatNumber } from "./api.js";
import { isFinal, statusBadge } from "./status.js";
import { drawPath } from "./sweep/path.js";
import { drawHeatmap, drawParcoords, drawSeeds } from "./sweep/overview.js";
import { fmt, has, pointKey } from "./sweep/points.js";
import { addSeedsForm, renderSummary } from "./sweep/summary.js";

const POLL_MS = 2000;
const TOP = 5;
const sweepId = Number(location.pathname.split("/").filter(Boolean).pop());
const banner = connectionBanner();
let timer = null;

// The runs of the best point (by its mean over seeds), which the table marks.
const bestIds = (summary) => new Set(summary?.best?.run_ids ?? []);
const seedsVary = (runs) => new Set(runs.map((run) => run.seed)).size > 1;

function renderHeader(sweep, runs) {
  document.title = `${sweep.name} · sweep · reglab`;
  document.querySelector("#sweep-name").textContent = `Sweep #${sweep.id} ${sweep.name}`;
  const done = runs.filter((run) => isFinal(run.status)).length;
  const summary = document.querySelector("#sweep-summary");
  summary.replaceChildren(
    ...(sweep.axes.length
      ? sweep.axes.map((axis) => el("span", { class: "axis" }, axis.path))
      : [el("span", { class: "axis" }, "seed repeats")]),
    el("span", { class: "muted" },
      `${sweep.axes.length ? `${sweep.mode} · ` : ""}${seedText(sweep, runs)}`
      + `${sweep.prune ? ` · pruning from epoch ${sweep.prune_after}` : ""} · ${done} / ${runs.length} done`),
    el("span", { class: "sweep-counts", id: "sweep-counts" },
      Object.entries(sweep.counts).map(([status, count]) => el("span", { dataset: { status } }, statusBadge(status), ` ${count}`))),
  );
  renderSummary(sweep.summary ?? null);
  const ranked = runs.filter((run) => has(run.best_val_data_loss))
    .sort((a, b) => a.best_val_data_loss - b.best_val_data_loss).slice(0, TOP);
  const compare = document.querySelector("#compare-top");
  compare.hidden = ranked.length < 2;
  compare.href = `/compare?ids=${ranked.map((run) => run.id).join(",")}`;
  compare.textContent = `Compare the top ${ranked.length} runs`;
  document.querySelector("#cancel-sweep").hidden = done === runs.length;
  renderPacks(runs);
}

// Which runs trained together as one packed model, in a sentence.
function renderPacks(runs) {
  const packs = new Map();
  for (const run of runs) {
    if (run.pack_id !== null && run.pack_id !== undefined) packs.set(run.pack_id, (packs.get(run.pack_id) ?? 0) + 1);
  }
  const line = document.querySelector("#sweep-packs");
  line.hidden = packs.size === 0;
  if (!packs.size) return;
  const alone = runs.filter((run) => run.pack_id === null || run.pack_id === undefined).length;
  const sizes = [...packs.entries()].map(([id, members]) => `#${id} (${members})`).join(", ");
  line.textContent = `Trained in ${packs.size} pack${packs.size > 1 ? "s" : ""}: ${sizes}`
    + `${alone ? `, and ${alone} run${alone > 1 ? "s" : ""} alone` : ""}. `
    + "A pack trains the points that differ only in penalty strengths and dropout rates as one model, "
    + "each member exactly as its own run would train.";
}

function seedText(sweep, runs) {
  const perPoint = new Map();
  for (const run of runs) {
    const key = pointKey(sweep, run.point);
    perPoint.set(key, (perPoint.get(key) ?? 0) + 1);
  }
  const counts = [...new Set(perPoint.values())].sort((a, b) => a - b);
  const most = counts.length ? counts[counts.length - 1] : sweep.seeds;
  const words = counts.length > 1 ? `${counts[0]}–${most}` : `${most}`;
  return `${words} seed${most > 1 ? "s" : ""} per point`;
}

function renderTable(sweep, runs) {
  const best = bestIds(sweep.summary);
  const seeds = seedsVary(runs);
  const packed = runs.some((run) => run.pack_id);
  const head = el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "Name"), el("th", {}, "Status"),
    sweep.labels.map((label, index) => el("th", { class: "num", title: sweep.axes[index].path }, label)),
    seeds ? el("th", { class: "num" }, "seed") : null,
    packed ? el("th", { class: "num", title: "The packed model it trained in" }, "pack") : null,
    el("th", {}, "Epoch"), el("th", { class: "num" }, "Best val data loss"),
    el("th", { class: "num" }, "Final data loss"), el("th", { class: "num" }, "Final val data loss"));
  const rows = runs.map((run) => el("tr", { class: best.has(run.id) ? "best" : "", dataset: { id: run.id } },
    el("td", { class: "num" }, run.id),
    el("td", { class: "name" }, el("a", { href: `/runs/${run.id}`, title: run.name }, run.name)),
    el("td", {}, statusBadge(run.status)),
    sweep.axes.map((axis) => el("td", { class: "point" }, fmt(run.point[axis.path]))),
    seeds ? el("td", { class: "num" }, run.seed) : null,
    packed ? el("td", { class: "num" }, run.pack_id ? `#${run.pack_id}` : "–") : null,
    el("td", {}, `${run.epochs_done} / ${run.epochs_total}`),
    el("td", { class: "num", title: best.has(run.id) ? "A run of the best point (by its mean over seeds)" : null },
      `${best.has(run.id) ? "★ " : ""}${formatNumber(run.best_val_data_loss)}`),
    el("td", { class: "num" }, formatNumber(run.data_loss)),
    el("td", { class: "num" }, formatNumber(run.val_data_loss))));
  document.querySelector("#sweep-runs").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
}

async function render(sweep) {
  const runs = sweep.runs;
  renderHeader(sweep, runs);
  renderTable(sweep, runs);
  const parent = document.querySelector("#charts");
  if (!sweep.axes.length) {
    document.querySelector("#sweep-lead").textContent = "The same spec trained with different seeds: "
      + "the band is the seed noise that a regularization 'win' has to beat.";
    await drawSeeds(sweep, runs, parent);
    return;
  }
  const summary = sweep.summary ?? null;
  sweep.axes.forEach((_, index) => drawPath(sweep, runs, summary, index, parent));
  if (sweep.axes.length === 2) drawHeatmap(sweep, runs, summary, parent);
  if (sweep.axes.length >= 3) await drawParcoords(sweep, runs, summary, parent);
}

function showError(message) {
  const box = document.querySelector("#sweep-error");
  box.hidden = false;
  box.textContent = message;
}

async function poll() {
  clearTimeout(timer);
  let sweep;
  try {
    sweep = await api(`/api/sweeps/${sweepId}`);
    banner.set(true);
  } catch (error) {
    if (error.status === 404 || error.status === 422) {
      showError(`Sweep not found: ${error.message}`);
      return;
    }
    if (error.status === undefined) banner.set(false);
    timer = setTimeout(poll, POLL_MS);
    return;
  }
  await render(sweep);
  if (sweep.runs.some((run) => !isFinal(run.status))) timer = setTimeout(poll, POLL_MS);
}

// New seeds: draw the grown sweep at once, then follow its runs.
addSeedsForm(sweepId, async (sweep) => {
  if (sweep?.runs) await render(sweep);
  poll();
});

document.querySelector("#cancel-sweep").addEventListener("click", async (event) => {
  if (!confirm("Cancel every unfinished run of this sweep?")) return;
  event.target.disabled = true;
  try {
    await api(`/api/sweeps/${sweepId}/cancel`, { method: "POST" });
  } catch (error) {
    showError(error.message);
  }
  event.target.disabled = false;
  poll();
});

poll().catch((error) => showError(error.message));
