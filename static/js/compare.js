// Several runs overlaid (or side by side), their differing settings and final metrics.
// Runs that share a group_key (seed repeats of one spec) are drawn as their mean with a
// band of ± one standard deviation, so a difference is judged against the seed noise.
import { api, connectionBanner, el, followRun, formatNumber } from "./api.js";
import { isFinal, statusBadge } from "./status.js";
import { Chart, ChartGroup, chartCard, colorOf } from "./charts.js";
import { showCompareSummary } from "./compare-summary.js";

const ids = (new URLSearchParams(location.search).get("ids") ?? "")
  .split(",").map((part) => Number(part.trim())).filter((id) => Number.isInteger(id) && id > 0);
const group = new ChartGroup();
const banner = connectionBanner();
let runs = [];
let history = {};
const lastEpoch = new Map();
let charts = [];
// Seed groups with two runs or more: [{ id: "g0", key, runs }].
let groups = [];
const groupOf = new Map();

const label = (run) => `#${run.id} ${run.name}`;
const colorFor = (run) => colorOf(runs.indexOf(run));

// The overlaid charts: one per quantity, every run in it.
const OVERLAYS = [
  { id: "chart-data-loss", title: "Data loss (without the penalty)", metrics: ["data_loss", "val_data_loss"] },
  { id: "chart-score", title: "Accuracy / MAE", metrics: ["score", "val_score"] },
  { id: "chart-gap", title: "Generalization gap (validation − training data loss)", metrics: ["gap"] },
  { id: "chart-penalty", title: "Penalty λ·R(w) in the loss", metrics: ["reg_loss"] },
];

function scoreName(run) {
  return run.task === "classification" ? "accuracy" : "mae";
}

// Values of one epoch as the charts name them.
function chartValues(run, values) {
  const score = scoreName(run);
  const out = { ...values, score: values[score], val_score: values[`val_${score}`] };
  if (values.val_data_loss !== undefined && values.data_loss !== undefined) {
    out.gap = values.val_data_loss - values.data_loss;
  }
  return out;
}

function historyValues(run) {
  const series = history[run.id] ?? { epochs: [], series: {} };
  return series.epochs.map((epoch, index) => {
    const values = {};
    for (const [name, column] of Object.entries(series.series)) {
      if (column[index] !== null) values[name] = column[index];
    }
    return [epoch, chartValues(run, values)];
  });
}

const hidden = new Set();

function findGroups() {
  const byKey = new Map();
  for (const run of runs) {
    if (!run.group_key) continue;
    if (!byKey.has(run.group_key)) byKey.set(run.group_key, []);
    byKey.get(run.group_key).push(run);
  }
  // Runs of one spec and one seed are copies (training is deterministic), not seed repeats.
  const seeds = (members) => new Set(members.map((run) => run.spec?.training?.seed)).size;
  groups = [...byKey.entries()].filter(([, members]) => members.length >= 2 && seeds(members) >= 2)
    .map(([key, members], index) => ({ id: `g${index}`, key, runs: members }));
  groupOf.clear();
  for (const group of groups) for (const run of group.runs) groupOf.set(run.id, group);
}

const banding = () => groups.length > 0 && document.querySelector("#bands").checked
  && !document.querySelector("#multiples").checked;
const groupLabel = (grp) => `${grp.runs.map((run) => `#${run.id}`).join(" ")} · mean ± 1 std of ${grp.runs.length} runs`;

// Mean and ± one (sample) standard deviation of a metric over a group's runs, per epoch.
function groupStats(grp, metric) {
  const byEpoch = new Map();
  for (const run of grp.runs) {
    for (const [epoch, values] of historyValues(run)) {
      if (values[metric] === undefined || values[metric] === null) continue;
      if (!byEpoch.has(epoch)) byEpoch.set(epoch, []);
      byEpoch.get(epoch).push(values[metric]);
    }
  }
  const epochs = [...byEpoch.keys()].sort((a, b) => a - b);
  const mean = [];
  const low = [];
  const high = [];
  for (const epoch of epochs) {
    const values = byEpoch.get(epoch);
    const m = values.reduce((sum, x) => sum + x, 0) / values.length;
    const sd = values.length > 1
      ? Math.sqrt(values.reduce((sum, x) => sum + (x - m) ** 2, 0) / (values.length - 1)) : 0;
    mean.push(m);
    low.push(m - sd);
    high.push(m + sd);
  }
  return { epochs, mean, low, high };
}

function addGroupTraces(chart, grp, metric, showlegend) {
  const validation = metric.startsWith("val_");
  const color = colorFor(grp.runs[0]);
  const stats = groupStats(grp, metric);
  const common = { legendgroup: grp.id, visible: !hidden.has(grp.id), color };
  const name = `${groupLabel(grp)}${validation ? " (validation)" : ""}`;
  chart.addTrace(`${grp.id}:${metric}:low`, { ...common, name: `${name} - 1 std`, width: 0, showlegend: false,
    x: stats.epochs, y: stats.low });
  chart.addTrace(`${grp.id}:${metric}:high`, { ...common, name: `${name} + 1 std`, width: 0, showlegend: false,
    fill: "tonexty", fillcolor: `${color}${validation ? "22" : "38"}`, x: stats.epochs, y: stats.high });
  chart.addTrace(`${grp.id}:${metric}:mean`, { ...common, name, dash: validation ? "dash" : "solid", showlegend,
    x: stats.epochs, y: stats.mean });
}

// New points of a grouped run move its group's mean and band: recompute them.
function refreshGroup(grp) {
  for (const { chart, metrics } of charts) {
    for (const metric of metrics) {
      const stats = groupStats(grp, metric);
      for (const part of ["low", "high", "mean"]) {
        const trace = chart.trace(`${grp.id}:${metric}:${part}`);
        if (!trace) continue;
        trace.x = stats.epochs.slice();
        trace.y = stats[part].slice();
        trace.pendingX = [];
        trace.pendingY = [];
        chart.dirty = true;
      }
    }
  }
  group.schedule();
}

function traceDefinition(run, metric, showlegend) {
  const validation = metric.startsWith("val_");
  return {
    name: `${label(run)}${validation ? " (validation)" : ""}`,
    color: colorFor(run),
    dash: validation ? "dash" : "solid",
    legendgroup: `run-${run.id}`,
    showlegend,
    visible: !hidden.has(run.id),
  };
}

// One legend for every chart: a click hides or shows a run everywhere.
function renderLegend() {
  const legend = document.querySelector("#legend");
  const bands = banding();
  const groupItems = bands ? groups.map((grp) => el("button", {
    type: "button",
    class: `legend-item group${hidden.has(grp.id) ? " off" : ""}`,
    dataset: { group: grp.id },
    title: "Show or hide this seed group in every chart",
    onclick: () => {
      if (hidden.has(grp.id)) hidden.delete(grp.id);
      else hidden.add(grp.id);
      for (const { chart, metrics } of charts) {
        const keys = metrics.flatMap((metric) => ["low", "high", "mean"].map((part) => `${grp.id}:${metric}:${part}`));
        chart.setVisible(keys, !hidden.has(grp.id));
      }
      renderLegend();
    },
  }, el("span", { class: "swatch", style: `background:${colorFor(grp.runs[0])}` }), groupLabel(grp),
  el("span", { class: "muted" }, ` · ${grp.runs[0].regularization}`))) : [];
  const single = bands ? runs.filter((run) => !groupOf.has(run.id)) : runs;
  legend.replaceChildren(...groupItems, ...single.map((run) => el("button", {
    type: "button",
    class: `legend-item${hidden.has(run.id) ? " off" : ""}`,
    dataset: { run: run.id },
    title: "Show or hide this run in every chart",
    onclick: () => {
      if (hidden.has(run.id)) hidden.delete(run.id);
      else hidden.add(run.id);
      for (const { chart, metrics } of charts) {
        chart.setVisible(metrics.map((metric) => `${run.id}:${metric}`), !hidden.has(run.id));
      }
      renderLegend();
    },
  }, el("span", { class: "swatch", style: `background:${colorFor(run)}` }), label(run),
  el("span", { class: "muted" }, ` · ${run.regularization}`))));
}

function buildCharts() {
  const parent = document.querySelector("#charts");
  parent.replaceChildren();
  group.charts = [];
  const multiples = document.querySelector("#multiples").checked;
  parent.classList.toggle("multiples", multiples);
  charts = [];
  const points = new Map(runs.map((run) => [run.id, historyValues(run)]));
  if (multiples) {
    for (const run of runs) {
      const chart = new Chart(chartCard(parent, `chart-run-${run.id}`), {
        title: `${label(run)} · ${run.regularization}`, yTitle: "data loss", group, height: 260,
      });
      for (const metric of ["data_loss", "val_data_loss"]) {
        const values = points.get(run.id);
        chart.addTrace(`${run.id}:${metric}`, {
          ...traceDefinition(run, metric, true),
          name: metric.startsWith("val_") ? "validation" : "training",
          x: values.filter(([, v]) => v[metric] !== undefined).map(([epoch]) => epoch),
          y: values.filter(([, v]) => v[metric] !== undefined).map(([, v]) => v[metric]),
        });
      }
      charts.push({ chart, metrics: ["data_loss", "val_data_loss"], runs: [run.id] });
    }
  } else {
    const bands = banding();
    for (const overlay of OVERLAYS) {
      const chart = new Chart(chartCard(parent, overlay.id), { title: overlay.title, group, legend: false });
      if (bands) {
        for (const grp of groups) {
          overlay.metrics.forEach((metric, index) => addGroupTraces(chart, grp, metric, index === 0));
        }
      }
      for (const run of runs) {
        if (bands && groupOf.has(run.id)) continue;
        overlay.metrics.forEach((metric, index) => {
          const values = points.get(run.id).filter(([, v]) => v[metric] !== undefined);
          chart.addTrace(`${run.id}:${metric}`, {
            ...traceDefinition(run, metric, index === 0),
            x: values.map(([epoch]) => epoch),
            y: values.map(([, v]) => v[metric]),
          });
        });
      }
      charts.push({ chart, metrics: overlay.metrics, runs: runs.map((run) => run.id) });
    }
  }
  drawInTurn(charts.map(({ chart }) => chart));
  renderLegend();
}

// Draw the charts one per frame, so the first is on screen before the others are built.
function drawInTurn(pending) {
  const [chart, ...rest] = pending;
  if (!chart) return;
  chart.draw();
  if (rest.length) requestAnimationFrame(() => setTimeout(() => drawInTurn(rest), 0));
}

function onMetrics(run, { epoch, values }) {
  if (epoch <= (lastEpoch.get(run.id) ?? -1)) return; // already drawn from the history
  lastEpoch.set(run.id, epoch);
  const shown = chartValues(run, values);
  for (const { chart, metrics, runs: ids } of charts) {
    if (!ids.includes(run.id)) continue;
    for (const metric of metrics) {
      if (shown[metric] !== undefined) chart.append(`${run.id}:${metric}`, epoch, shown[metric]);
    }
  }
  const series = history[run.id];
  if (series) {
    series.epochs.push(epoch);
    for (const [name, value] of Object.entries(values)) {
      (series.series[name] ??= new Array(series.epochs.length - 1).fill(null)).push(value);
    }
    for (const column of Object.values(series.series)) {
      while (column.length < series.epochs.length) column.push(null);
    }
  }
  if (banding() && groupOf.has(run.id)) refreshGroup(groupOf.get(run.id));
}

// Flatten a spec into "model.layers.0.regularizer.l2" → value rows.
function flatten(value, prefix = "", out = {}) {
  if (value !== null && typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
  } else if (value !== null && value !== undefined) {
    out[prefix] = value;
  }
  return out;
}

function finalMetric(run, name) {
  const series = history[run.id]?.series?.[name];
  if (!series) return undefined;
  for (let index = series.length - 1; index >= 0; index -= 1) if (series[index] !== null) return series[index];
  return undefined;
}

function renderTable() {
  const flat = runs.map((run) => flatten(run.spec));
  const keys = [...new Set(flat.flatMap((entry) => Object.keys(entry)))].filter((key) => key !== "name");
  const table = document.querySelector("#spec-table");
  const head = el("tr", {}, el("th", {}, "setting"),
    runs.map((run) => el("th", {}, el("span", { style: `color:${colorFor(run)}` }, "■ "),
      el("a", { href: `/runs/${run.id}` }, label(run)))));
  const rows = [];
  rows.push(el("tr", {}, el("td", { class: "key" }, "status"), runs.map((run) => el("td", {}, statusBadge(run.status)))));
  rows.push(el("tr", {}, el("td", { class: "key" }, "regularization"), runs.map((run) => el("td", {}, run.regularization))));
  for (const key of keys) {
    const values = flat.map((entry) => (key in entry ? String(entry[key]) : "–"));
    const differs = new Set(values).size > 1;
    rows.push(el("tr", { class: differs ? "differs" : "", dataset: { key } },
      el("td", { class: "key" }, key),
      values.map((value) => el("td", { class: differs ? "differs" : "" }, value))));
  }
  const results = [
    ["best val_data_loss", (run) => formatNumber(run.best_val_data_loss)],
    ["best epoch", (run) => run.best_epoch ?? "–"],
    ["final data_loss", (run) => formatNumber(finalMetric(run, "data_loss"))],
    ["final val_data_loss", (run) => formatNumber(finalMetric(run, "val_data_loss"))],
    ["final val accuracy / MAE", (run) => formatNumber(finalMetric(run, `val_${scoreName(run)}`))],
  ];
  const testNames = [...new Set(runs.flatMap((run) => Object.keys(run.test_metrics ?? {})))];
  for (const name of testNames) results.push([name, (run) => formatNumber(run.test_metrics?.[name])]);
  for (const [name, value] of results) {
    rows.push(el("tr", { class: "result" }, el("td", { class: "key" }, name),
      runs.map((run) => el("td", { class: "num" }, value(run)))));
  }
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
}

function showError(message) {
  const box = document.querySelector("#compare-error");
  box.hidden = false;
  box.textContent = message;
}

async function start() {
  if (!ids.length) {
    showError("No runs chosen: pick them on the runs page and press Compare.");
    return;
  }
  const wanted = ids.join(",");
  const early = window.reglabPrefetch?.ids === wanted ? window.reglabPrefetch : null;
  const [list, metrics] = await Promise.all([
    early?.runs.catch(() => null) ?? null,
    early?.metrics.catch(() => null) ?? null,
  ]).then(async ([runs, series]) => [
    runs ?? (await api(`/api/experiments?ids=${wanted}&limit=100`)),
    series ?? (await api(`/api/metrics?ids=${wanted}`)),
  ]);
  const byId = new Map(list.items.map((run) => [run.id, run]));
  runs = ids.filter((id) => byId.has(id)).map((id) => byId.get(id));
  history = Object.fromEntries(Object.entries(metrics.runs).map(([id, series]) => [Number(id), series]));
  if (metrics.missing.length) showError(`Not found (deleted?): ${metrics.missing.map((id) => `#${id}`).join(", ")}`);
  for (const run of runs) {
    const epochs = history[run.id]?.epochs ?? [];
    lastEpoch.set(run.id, epochs.length ? epochs[epochs.length - 1] : -1);
  }
  findGroups();
  const summary = document.querySelector("#compare-summary");
  if (groups.length) showCompareSummary(runs.map((run) => run.id), summary);
  document.querySelector("#bands-toggle").hidden = groups.length === 0;
  document.querySelector("#controls").replaceChildren(group.controls());
  buildCharts();
  renderTable();
  document.querySelector("#multiples").addEventListener("change", buildCharts);
  document.querySelector("#bands").addEventListener("change", buildCharts);
  for (const run of runs) {
    if (isFinal(run.status)) continue;
    followRun(run.id, {
      onMetrics: (data) => onMetrics(run, data),
      onStatus: async (data) => {
        run.status = data.status;
        if (isFinal(data.status)) Object.assign(run, await api(`/api/experiments/${run.id}`));
        renderTable();
        if (isFinal(data.status) && groupOf.has(run.id)) showCompareSummary(runs.map((one) => one.id), summary);
      },
      onConnection: (connected) => banner.set(connected),
    });
  }
}

start().catch((error) => showError(error.message));
