// One axis's regularization path: data loss against the swept setting, the best point's
// mean starred, the runner-up's mean ± std as a band across the chart, and a caption that
// says what each line is and which side of the U each point is on.
//
// With several axes a chart has two views: the slice through the best point (the other
// settings fixed at the best point's; the default) and the marginal (every run, the other
// settings pooled and drawn faint; its line is a mean over the other settings, not seed
// noise). A band is only ever the spread between seeds of one setting.
import { el } from "../api.js";
import { PALETTE } from "../charts.js";
import { isFinal } from "../status.js";
import { BASE_LAYOUT, chartCard, react, runsData, title } from "./plot.js";
import {
  TRAIN, VAL, axisColumns, axisScale, countWords, fmt, has, loss, runText, viewRuns,
} from "./points.js";

const COLOR = { [VAL.key]: PALETTE[0], [TRAIN.key]: PALETTE[1] };
const SIDE_TEXT = { overfitting: "over-fitting", underfitting: "under-fitting", best: "best" };
const chosen = new Map(); // axis index → the view the person picked
const latest = new Map(); // axis index → what it was last drawn from (a toggle redraws it)

// The view an axis opens with: the slice through the best point where the grid has one.
function viewOf(sweep, index, best) {
  if (sweep.axes.length === 1) return "single";
  if (!best) return "marginal";
  return chosen.get(index) ?? (sweep.mode === "grid" ? "slice" : "marginal");
}

// "n = 4", or "n = 4 settings × 2 seeds" where settings repeat their seeds (`stats`: one
// metric's numbers per value of the axis).
function pooledCount(stats) {
  const settings = countWords(stats.map((stat) => stat.settings), "setting");
  const seeds = stats.flatMap((stat) => stat.seeds);
  if (Math.max(...seeds) === 1) return `n = ${settings.replace(/ settings?$/, "")}`;
  return `n = ${settings} × ${countWords(seeds)}`;
}

function metricTraces(sweep, scale, columns, runs, metric, view) {
  const stat = (column) => column[metric === VAL ? "val" : "train"];
  const shown = columns.filter((column) => stat(column));
  const color = COLOR[metric.key];
  const pooled = view === "marginal";
  const traces = [];
  const seeded = shown.filter((column) => stat(column).seedStd !== null);
  const seedWords = seeded.length ? countWords(seeded.flatMap((column) => stat(column).seeds.filter((n) => n >= 2))) : "";
  if (seeded.length) {
    const band = (sign) => shown.map((column) => stat(column).mean + sign * (stat(column).seedStd ?? 0));
    traces.push({
      x: shown.map((column) => column.position), y: band(-1), type: "scatter", mode: "lines",
      line: { width: 0, color }, hoverinfo: "skip", showlegend: false, legendgroup: metric.key,
      name: `${metric.name} − 1 std over ${seedWords}`,
    }, {
      x: shown.map((column) => column.position), y: band(1), type: "scatter", mode: "lines",
      line: { width: 0, color }, fill: "tonexty", fillcolor: `${color}33`, hoverinfo: "skip",
      legendgroup: metric.key, name: `${metric.name} ± 1 std over ${seedWords}`, showlegend: true,
    });
  }
  const lineName = pooled ? `${metric.name}: mean over the other settings (${pooledCount(shown.map(stat))})`
    : seeded.length ? `${metric.name}: mean of ${seedWords}` : `${metric.name} (line through the runs)`;
  traces.push({
    x: shown.map((column) => column.position), y: shown.map((column) => stat(column).mean), type: "scatter",
    mode: "lines", line: { color, width: 2, dash: pooled ? "dash" : "solid" }, legendgroup: metric.key,
    showlegend: pooled || seeded.length > 0, name: lineName, hovertemplate: `${lineName}: %{y:.4g}<extra></extra>`,
  });
  const marked = runs.filter((run) => has(run[metric.key]) && has(run.point[scale.path]));
  traces.push({
    x: marked.map((run) => scale.position(run.point[scale.path])),
    y: marked.map((run) => run[metric.key]),
    customdata: marked.map((run) => run.id),
    text: marked.map((run) => runText(sweep, run)),
    type: "scatter", mode: "markers", legendgroup: metric.key,
    name: pooled ? `${metric.name}, each run (other settings pooled)` : metric.name,
    marker: {
      color, size: pooled ? 7 : 9,
      symbol: marked.map((run) => (run.status === "pruned" ? `${metric.symbol}-open` : metric.symbol)),
      opacity: marked.map((run) => (pooled ? 0.3 : 0.95) * (isFinal(run.status) ? 1 : 0.5)),
    },
    hovertemplate: "%{text}<br>%{y:.4g}<extra></extra>",
  });
  return traces;
}

// The runner-up's mean ± 1 std across the whole chart: a best mean inside it is within
// seed noise. One run: its mean as a dotted line.
function runnerUpTraces(scale, runnerUp) {
  if (!runnerUp || !has(runnerUp.mean) || !scale.values.length) return [];
  const [x0, x1] = [scale.position(scale.values[0]), scale.position(scale.values[scale.values.length - 1])];
  const { mean, std } = runnerUp;
  if (!has(std)) {
    return [{
      x: [x0, x1], y: [mean, mean], type: "scatter", mode: "lines", hoverinfo: "skip",
      line: { color: "#6b7280", width: 1.5, dash: "dot" }, name: `runner-up ${runnerUp.label}: ${loss(mean)} (one run)`,
    }];
  }
  return [{
    x: [x0, x1, x1, x0, x0], y: [mean - std, mean - std, mean + std, mean + std, mean - std],
    type: "scatter", mode: "lines", fill: "toself", fillcolor: "rgba(107,114,128,0.16)", hoverinfo: "skip",
    line: { width: 0, color: "#6b7280" },
    name: `runner-up ${runnerUp.label}: ${loss(mean)} ± ${loss(std)} over ${countWords([runnerUp.n])}`,
  }];
}

function bestTrace(scale, best) {
  const x = best.point[scale.path];
  return {
    x: [scale.position(x)], y: [best.mean], type: "scatter", mode: "markers", name: "best",
    marker: { symbol: "star", size: 20, color: "#f2b400", line: { color: "#1d2330", width: 1 } },
    error_y: has(best.std) ? { type: "data", array: [best.std], color: "#1d2330", thickness: 1.2, width: 6 } : undefined,
    customdata: [runsData(best.run_ids)],
    hovertemplate: `best mean: ${best.label}<br>${loss(best.mean)}${has(best.std) ? ` ± ${loss(best.std)}` : ""}`
      + ` over ${countWords([best.n])}<extra></extra>`,
  };
}

// Which side of the U each point of the view is on, in axis order.
function sidesText(sweep, scale, summary, view, best) {
  if (!summary || view === "marginal") return "";
  const inView = (point) => view === "single" || sweep.axes.every((axis) => axis.path === scale.path
    || point.point[axis.path] === best.point[axis.path]);
  const sides = summary.points.filter((point) => point.side && inView(point))
    .sort((a, b) => a.point[scale.path] - b.point[scale.path])
    .map((point) => `${scale.label}=${fmt(point.point[scale.path])} ${SIDE_TEXT[point.side] ?? point.side}`);
  return sides.length ? ` Sides of the U: ${sides.join(" · ")}.` : "";
}

function captionText(sweep, scale, columns, view, summary, best) {
  const stats = columns.map((column) => column.val).filter(Boolean);
  const repeats = stats.filter((stat) => stat.seedStd !== null);
  const seedWords = repeats.length ? countWords(repeats.flatMap((stat) => stat.seeds.filter((n) => n >= 2))) : "";
  const fixed = sweep.axes.map((axis, i) => [axis.path, sweep.labels[i]]).filter(([path]) => path !== scale.path);
  const others = fixed.map(([, label]) => label);
  let text;
  if (view === "marginal") {
    text = `Marginal of ${scale.label}: each point of the dashed line is the mean over the other settings `
      + `(${pooledCount(stats)}; ${others.join(", ")} vary), not seed noise; every run is a faint marker.`;
    text += repeats.length
      ? ` The band is ± 1 std over ${seedWords}: the spread between seeds of one setting, pooled.`
      : " One seed per point, so no band: the spread of the faint markers is the other settings' doing.";
  } else {
    text = view === "slice"
      ? `Slice through the best point: ${fixed.map(([path, label]) => `${label}=${fmt(best.point[path])}`).join(", ")} `
        + `fixed, ${scale.label} varies.`
      : "Best validation data loss (circles) and final training data loss (diamonds) of each run.";
    text += repeats.length
      ? ` Lines join each setting's mean; the band is ± 1 std over ${seedWords}.`
      : " One run per setting: no seed repeats, so no band (add seeds to see the seed noise).";
  }
  const runnerUp = summary?.runner_up;
  if (runnerUp) {
    text += has(runnerUp.std) ? ` The grey band is the runner-up ${runnerUp.label}'s mean ± 1 std.`
      : ` The dotted grey line is the runner-up ${runnerUp.label} (one run).`;
  }
  return text + sidesText(sweep, scale, summary, view, best);
}

function viewToggle(index, onChange) {
  const option = (value, words) => el("label", {},
    el("input", { type: "radio", name: `view-${index}`, value, id: `view-${index}-${value}`,
      onchange: () => onChange(value) }), ` ${words}`);
  return el("div", { class: "view-toggle", id: `view-toggle-${index}`, role: "radiogroup",
    "aria-label": "What the chart draws" },
  option("slice", "slice through the best point"), option("marginal", "mean over the other settings"));
}

export function drawPath(sweep, runs, summary, index, parent) {
  const id = `chart-path-${index}`;
  latest.set(index, [sweep, runs, summary, index, parent]);
  const toggle = sweep.axes.length > 1 && !document.getElementById(`view-toggle-${index}`)
    ? viewToggle(index, (view) => {
      chosen.set(index, view);
      drawPath(...latest.get(index));
    }) : [];
  const { div, caption } = chartCard(parent, id, { caption: true, before: toggle });
  const best = summary?.best ?? null;
  const view = viewOf(sweep, index, best);
  for (const input of document.querySelectorAll(`input[name="view-${index}"]`)) {
    input.checked = input.value === view;
    input.disabled = input.value === "slice" && !best;
  }
  div.dataset.view = view;
  const scale = axisScale(sweep, index, runs);
  const shown = viewRuns(sweep, runs, index, view, best);
  const columns = axisColumns(sweep, shown, scale);
  const data = [
    ...runnerUpTraces(scale, summary?.runner_up),
    ...metricTraces(sweep, scale, columns, shown, VAL, view),
    ...metricTraces(sweep, scale, columns, shown, TRAIN, view),
  ];
  const annotations = [];
  if (best && has(best.point[scale.path]) && has(best.mean)) {
    data.push(bestTrace(scale, best));
    const x = scale.position(best.point[scale.path]);
    annotations.push({
      x: scale.log ? Math.log10(x) : x, y: best.mean,
      text: `best${best.n > 1 ? " mean" : ""} ${scale.label}=${fmt(best.point[scale.path])}`,
      showarrow: true, arrowhead: 0, ax: 0, ay: -34, font: { size: 12 }, bgcolor: "rgba(255,255,255,0.85)",
    });
  }
  react(div, data, {
    ...BASE_LAYOUT,
    title: title(`Data loss against ${scale.path}${view === "slice" ? " (slice through the best point)" : view === "marginal" ? " (mean over the other settings)" : ""}`),
    height: 500,
    margin: { ...BASE_LAYOUT.margin, t: 40 },
    // Below the axis: the legend names what each line is, and can take three rows.
    legend: { orientation: "h", x: 0, xanchor: "left", y: -0.16, yanchor: "top", font: { size: 11 } },
    xaxis: { title: { text: scale.path }, type: scale.log ? "log" : "linear", zeroline: false, ...scale.ticks },
    yaxis: { title: { text: "data loss (without the penalty)" }, zeroline: false },
    annotations,
    hovermode: "closest",
    uirevision: `${id}-${view}`,
  });
  caption.textContent = captionText(sweep, scale, columns, view, summary, best);
}
