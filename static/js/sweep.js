// One sweep: the U-shaped path of each swept setting, a heat map for two settings, parallel
// coordinates for more, mean ± std bands over seeds, and its runs. Polls the sweep every two
// seconds while any run is unfinished; Plotly.react with a fixed uirevision keeps the zoom.
/* global Plotly */
import { api, connectionBanner, el, formatNumber } from "./api.js";
import { isFinal, statusBadge } from "./status.js";
import { PALETTE } from "./charts.js";

const POLL_MS = 2000;
const TOP = 5;
const VAL = { key: "best_val_data_loss", name: "best val_data_loss", color: PALETTE[0], symbol: "circle" };
const TRAIN = { key: "data_loss", name: "final data_loss (training)", color: PALETTE[1], symbol: "diamond" };
const sweepId = Number(location.pathname.split("/").filter(Boolean).pop());
const banner = connectionBanner();
const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
const BASE_LAYOUT = {
  margin: { l: 64, r: 24, t: 40, b: 52 },
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "#fff",
  font: { family: "system-ui, sans-serif", size: 12, color: "#1d2330" },
  legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom", font: { size: 11 } },
};
let timer = null;

const value = (run, key) => (key === "data_loss" ? run.data_loss : run[key]);
const has = (x) => x !== null && x !== undefined && Number.isFinite(x);
// Like Python's "{:g}" in the run names: 0.0001, 1e-05, 0.5.
const fmt = (x) => (has(x) ? Number(x.toPrecision(4)).toString() : "–");

function meanStd(values) {
  const mean = values.reduce((sum, x) => sum + x, 0) / values.length;
  if (values.length < 2) return [mean, 0];
  const variance = values.reduce((sum, x) => sum + (x - mean) ** 2, 0) / (values.length - 1);
  return [mean, Math.sqrt(variance)];
}

// The run with the lowest best validation data loss.
function bestRun(runs) {
  return runs.filter((run) => has(run.best_val_data_loss))
    .reduce((best, run) => (best === null || run.best_val_data_loss < best.best_val_data_loss ? run : best), null);
}

// How an axis is drawn: log when its values span a decade or more; a 0 on a log axis sits a
// decade below the smallest positive value and is labelled "0".
function axisScale(sweep, index, runs) {
  const axis = sweep.axes[index];
  const values = [...new Set(runs.map((run) => run.point[axis.path]).filter(has))].sort((a, b) => a - b);
  const positive = values.filter((x) => x > 0);
  const log = positive.length >= 2 && values.every((x) => x >= 0)
    && (axis.scale === "log" && axis.values === null || positive[positive.length - 1] / positive[0] >= 10);
  const zeroAt = log ? positive[0] / 10 : 0;
  const position = (x) => (log && x === 0 ? zeroAt : x);
  const ticks = values.length <= 12
    ? { tickvals: values.map(position), ticktext: values.map((x) => fmt(x)) } : {};
  return { path: axis.path, label: sweep.labels[index], log, position, values, ticks };
}

function pointText(sweep, run) {
  const parts = sweep.axes.map((axis, index) => `${sweep.labels[index]}=${fmt(run.point[axis.path])}`);
  if (sweep.seeds > 1) parts.push(`seed ${run.seed}`);
  return `#${run.id} ${parts.join(" · ")} (${run.status})`;
}

// One metric's points, and the mean ± std over runs that share the x (seeds, other axes).
function metricTraces(sweep, runs, scale, index, metric) {
  const shown = runs.filter((run) => has(value(run, metric.key)) && has(run.point[scale.path]));
  const traces = [];
  const groups = new Map();
  for (const run of shown) {
    if (run.status === "failed" || run.status === "pruned") continue;
    const x = scale.position(run.point[scale.path]);
    if (!groups.has(x)) groups.set(x, []);
    groups.get(x).push(value(run, metric.key));
  }
  const xs = [...groups.keys()].sort((a, b) => a - b);
  const stats = xs.map((x) => meanStd(groups.get(x)));
  if (xs.some((x) => groups.get(x).length >= 2)) {
    traces.push({
      x: xs, y: stats.map(([mean, std]) => mean - std), type: "scatter", mode: "lines",
      line: { width: 0, color: metric.color }, hoverinfo: "skip", showlegend: false,
      legendgroup: metric.key, name: `${metric.name} − 1 std`,
    }, {
      x: xs, y: stats.map(([mean, std]) => mean + std), type: "scatter", mode: "lines",
      line: { width: 0, color: metric.color }, fill: "tonexty", fillcolor: `${metric.color}33`,
      hoverinfo: "skip", legendgroup: metric.key, name: `${metric.name} ± 1 std`, showlegend: true,
    });
  }
  traces.push({
    x: xs, y: stats.map(([mean]) => mean), type: "scatter", mode: "lines",
    line: { color: metric.color, width: 2 }, legendgroup: metric.key, showlegend: false,
    name: `${metric.name} (mean)`, hovertemplate: "mean %{y:.4g}<extra></extra>",
  });
  traces.push({
    x: shown.map((run) => scale.position(run.point[scale.path])),
    y: shown.map((run) => value(run, metric.key)),
    customdata: shown.map((run) => run.id),
    text: shown.map((run) => pointText(sweep, run)),
    type: "scatter", mode: "markers", name: metric.name, legendgroup: metric.key,
    marker: {
      color: metric.color, size: 9,
      symbol: shown.map((run) => (run.status === "pruned" ? `${metric.symbol}-open` : metric.symbol)),
      opacity: shown.map((run) => (isFinal(run.status) ? 0.95 : 0.45)),
    },
    hovertemplate: "%{text}<br>%{y:.4g}<extra></extra>",
  });
  return traces;
}

function drawPath(sweep, runs, index, parent) {
  const id = `chart-path-${index}`;
  const div = chartDiv(parent, id);
  const scale = axisScale(sweep, index, runs);
  const data = [...metricTraces(sweep, runs, scale, index, VAL), ...metricTraces(sweep, runs, scale, index, TRAIN)];
  const best = bestRun(runs);
  const annotations = [];
  if (best && has(best.point[scale.path])) {
    const x = scale.position(best.point[scale.path]);
    data.push({
      x: [x], y: [best.best_val_data_loss], type: "scatter", mode: "markers", name: "best",
      marker: { symbol: "star", size: 20, color: "#f2b400", line: { color: "#1d2330", width: 1 } },
      customdata: [best.id], hovertemplate: `best: ${pointText(sweep, best)}<br>%{y:.4g}<extra></extra>`,
    });
    annotations.push({
      x: scale.log ? Math.log10(x) : x, y: best.best_val_data_loss, text: `best ${scale.label}=${fmt(best.point[scale.path])}`,
      showarrow: true, arrowhead: 0, ax: 0, ay: -34, font: { size: 12 },
      bgcolor: "rgba(255,255,255,0.85)",
    });
  }
  const layout = {
    ...BASE_LAYOUT,
    title: { text: `Data loss against ${scale.path}`, font: { size: 14 }, x: 0.01, xanchor: "left" },
    height: 420,
    xaxis: { title: { text: scale.path }, type: scale.log ? "log" : "linear", zeroline: false, ...scale.ticks },
    yaxis: { title: { text: "data loss (without the penalty)" }, zeroline: false },
    annotations,
    hovermode: "closest",
    uirevision: id,
  };
  react(div, data, layout);
}

// Two axes: mean best val_data_loss per cell of the grid; random draws as coloured points.
function drawHeatmap(sweep, runs, parent) {
  const div = chartDiv(parent, "chart-heatmap");
  const [sx, sy] = [axisScale(sweep, 0, runs), axisScale(sweep, 1, runs)];
  const shown = runs.filter((run) => has(run.best_val_data_loss));
  const best = bestRun(runs);
  const layout = {
    ...BASE_LAYOUT,
    title: { text: "Best val_data_loss over both settings", font: { size: 14 }, x: 0.01, xanchor: "left" },
    height: 440,
    hovermode: "closest",
    uirevision: "chart-heatmap",
  };
  let data;
  if (sweep.mode === "grid") {
    const cells = sy.values.map((y) => sx.values.map((x) => {
      const values = shown.filter((run) => run.point[sx.path] === x && run.point[sy.path] === y)
        .map((run) => run.best_val_data_loss);
      return values.length ? meanStd(values)[0] : null;
    }));
    data = [{
      type: "heatmap", x: sx.values.map(fmt), y: sy.values.map(fmt), z: cells,
      colorscale: "Viridis", reversescale: true, colorbar: { title: { text: "best val<br>data loss" } },
      texttemplate: "%{z:.3f}", hovertemplate: `${sx.label}=%{x}<br>${sy.label}=%{y}<br>%{z:.4g}<extra></extra>`,
      hoverongaps: false, xgap: 2, ygap: 2,
    }];
    if (best) {
      data.push({
        type: "scatter", mode: "markers", name: "best", x: [fmt(best.point[sx.path])], y: [fmt(best.point[sy.path])],
        marker: { symbol: "star", size: 22, color: "#f2b400", line: { color: "#1d2330", width: 1 } },
        hovertemplate: `best: ${pointText(sweep, best)}<extra></extra>`, showlegend: false,
      });
    }
    layout.xaxis = { title: { text: sx.path }, type: "category" };
    layout.yaxis = { title: { text: sy.path }, type: "category" };
  } else {
    data = [{
      type: "scatter", mode: "markers", x: shown.map((run) => sx.position(run.point[sx.path])),
      y: shown.map((run) => sy.position(run.point[sy.path])), text: shown.map((run) => pointText(sweep, run)),
      marker: { size: 12, color: shown.map((run) => run.best_val_data_loss), colorscale: "Viridis", reversescale: true,
        showscale: true, colorbar: { title: { text: "best val<br>data loss" } } },
      hovertemplate: "%{text}<br>%{marker.color:.4g}<extra></extra>",
    }];
    layout.xaxis = { title: { text: sx.path }, type: sx.log ? "log" : "linear" };
    layout.yaxis = { title: { text: sy.path }, type: sy.log ? "log" : "linear" };
  }
  react(div, data, layout);
}

// Three or more axes: one line per run through every setting and its best val_data_loss.
function drawParcoords(sweep, runs, parent) {
  const div = chartDiv(parent, "chart-parcoords");
  const shown = runs.filter((run) => has(run.best_val_data_loss));
  const dimensions = sweep.axes.map((axis, index) => {
    const scale = axisScale(sweep, index, runs);
    const log = scale.log && shown.every((run) => run.point[axis.path] > 0);
    return {
      label: log ? `log10 ${scale.label}` : scale.label,
      values: shown.map((run) => (log ? Math.log10(run.point[axis.path]) : run.point[axis.path])),
    };
  });
  dimensions.push({ label: "best val_data_loss", values: shown.map((run) => run.best_val_data_loss) });
  const data = [{
    type: "parcoords", dimensions,
    line: { color: shown.map((run) => run.best_val_data_loss), colorscale: "Viridis", reversescale: true,
      showscale: true, colorbar: { title: { text: "best val<br>data loss" } } },
  }];
  const layout = {
    ...BASE_LAYOUT,
    title: { text: "Every setting of every run, coloured by its best val_data_loss", font: { size: 14 }, x: 0.01, xanchor: "left" },
    height: 460,
    margin: { l: 80, r: 80, t: 80, b: 30 },
    uirevision: "chart-parcoords",
  };
  react(div, data, layout);
}

// Seed repeats without axes: each epoch's mean ± std over the seeds.
async function drawSeeds(sweep, runs, parent) {
  const div = chartDiv(parent, "chart-seeds");
  const ids = runs.map((run) => run.id).join(",");
  if (!ids) return;
  const history = await api(`/api/metrics?ids=${ids}&names=data_loss,val_data_loss`);
  const data = [];
  for (const metric of [{ key: "val_data_loss", name: "validation", color: PALETTE[0] },
    { key: "data_loss", name: "training", color: PALETTE[1] }]) {
    const byEpoch = new Map();
    for (const series of Object.values(history.runs)) {
      series.epochs.forEach((epoch, index) => {
        const y = series.series[metric.key]?.[index];
        if (!has(y)) return;
        if (!byEpoch.has(epoch)) byEpoch.set(epoch, []);
        byEpoch.get(epoch).push(y);
      });
    }
    const epochs = [...byEpoch.keys()].sort((a, b) => a - b);
    const stats = epochs.map((epoch) => meanStd(byEpoch.get(epoch)));
    data.push(
      { x: epochs, y: stats.map(([m, s]) => m - s), type: "scatter", mode: "lines", line: { width: 0, color: metric.color },
        hoverinfo: "skip", showlegend: false, legendgroup: metric.key, name: `${metric.name} − 1 std` },
      { x: epochs, y: stats.map(([m, s]) => m + s), type: "scatter", mode: "lines", line: { width: 0, color: metric.color },
        fill: "tonexty", fillcolor: `${metric.color}33`, hoverinfo: "skip", legendgroup: metric.key,
        name: `${metric.name} ± 1 std` },
      { x: epochs, y: stats.map(([m]) => m), type: "scatter", mode: "lines", line: { color: metric.color, width: 2 },
        legendgroup: metric.key, name: `${metric.name} data loss, mean of ${runs.length} seeds`,
        hovertemplate: "%{y:.4g}<extra></extra>" },
    );
  }
  const layout = {
    ...BASE_LAYOUT,
    title: { text: "Data loss per epoch over the seeds (mean ± 1 std)", font: { size: 14 }, x: 0.01, xanchor: "left" },
    height: 400,
    xaxis: { title: { text: "epoch" }, zeroline: false },
    yaxis: { title: { text: "data loss (without the penalty)" }, zeroline: false },
    hovermode: "x unified",
    uirevision: "chart-seeds",
  };
  react(div, data, layout);
}

function chartDiv(parent, id) {
  let div = document.getElementById(id);
  if (!div) {
    const card = el("section", { class: "chart-card" });
    div = el("div", { class: "chart tall", id });
    card.append(div);
    parent.append(card);
  }
  return div;
}

function react(div, data, layout) {
  const first = !div.dataset.drawn;
  Plotly.react(div, data, layout, CONFIG);
  if (first) {
    div.dataset.drawn = "1";
    // A click on a run's point opens it.
    div.on?.("plotly_click", (event) => {
      const id = event.points?.[0]?.customdata;
      if (Number.isInteger(id)) location.href = `/runs/${id}`;
    });
  }
}

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
      `${sweep.axes.length ? `${sweep.mode} · ` : ""}${sweep.seeds} seed${sweep.seeds > 1 ? "s" : ""} per point`
      + `${sweep.prune ? ` · pruning from epoch ${sweep.prune_after}` : ""} · ${done} / ${runs.length} done`),
    el("span", { class: "sweep-counts", id: "sweep-counts" },
      Object.entries(sweep.counts).map(([status, count]) => el("span", { dataset: { status } }, statusBadge(status), ` ${count}`))),
  );
  const best = bestRun(runs);
  const line = document.querySelector("#sweep-best");
  line.replaceChildren();
  if (best) {
    line.append("Best so far: ", el("a", { href: `/runs/${best.id}` }, pointText(sweep, best)),
      " with val_data_loss ", el("strong", {}, formatNumber(best.best_val_data_loss)));
  }
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

function renderTable(sweep, runs) {
  const best = bestRun(runs);
  const head = el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "Name"), el("th", {}, "Status"),
    sweep.labels.map((label, index) => el("th", { class: "num", title: sweep.axes[index].path }, label)),
    sweep.seeds > 1 ? el("th", { class: "num" }, "seed") : null,
    runs.some((run) => run.pack_id) ? el("th", { class: "num", title: "The packed model it trained in" }, "pack") : null,
    el("th", {}, "Epoch"), el("th", { class: "num" }, "Best val data loss"),
    el("th", { class: "num" }, "Final data loss"), el("th", { class: "num" }, "Final val data loss"));
  const rows = runs.map((run) => el("tr", { class: run === best ? "best" : "", dataset: { id: run.id } },
    el("td", { class: "num" }, run.id),
    el("td", { class: "name" }, el("a", { href: `/runs/${run.id}`, title: run.name }, run.name)),
    el("td", {}, statusBadge(run.status)),
    sweep.axes.map((axis) => el("td", { class: "point" }, fmt(run.point[axis.path]))),
    sweep.seeds > 1 ? el("td", { class: "num" }, run.seed) : null,
    runs.some((other) => other.pack_id) ? el("td", { class: "num" }, run.pack_id ? `#${run.pack_id}` : "–") : null,
    el("td", {}, `${run.epochs_done} / ${run.epochs_total}`),
    el("td", { class: "num" }, `${run === best ? "★ " : ""}${formatNumber(run.best_val_data_loss)}`),
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
  sweep.axes.forEach((_, index) => drawPath(sweep, runs, index, parent));
  if (sweep.axes.length === 2) drawHeatmap(sweep, runs, parent);
  if (sweep.axes.length >= 3) drawParcoords(sweep, runs, parent);
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
