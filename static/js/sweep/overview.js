// The sweep at a glance: a heat map for two settings, parallel coordinates for three or
// more (or, where the browser has no WebGL, a sortable table of the points coloured by
// their loss), and for seed repeats alone each epoch's mean ± std over the seeds.
import { api, el } from "../api.js";
import { PALETTE } from "../charts.js";
import { reactIfDrawable } from "../webgl.js";
import { BASE_LAYOUT, CONFIG, chartCard, react, runsData, title } from "./plot.js";
import { axisScale, fmt, has, loss, meanStd, pointKey, runText, sweepPoints } from "./points.js";

const SIDE_TEXT = { overfitting: "over-fitting", underfitting: "under-fitting", best: "best" };

// Two axes: mean best val_data_loss per cell of the grid; random draws as coloured points.
export function drawHeatmap(sweep, runs, summary, parent) {
  const { div } = chartCard(parent, "chart-heatmap");
  const [sx, sy] = [axisScale(sweep, 0, runs), axisScale(sweep, 1, runs)];
  const points = new Map(sweepPoints(sweep, runs).map((point) => [point.key, point]));
  const best = summary?.best ?? null;
  const layout = {
    ...BASE_LAYOUT, title: title("Best val_data_loss over both settings (mean over seeds)"), height: 440,
    hovermode: "closest", uirevision: "chart-heatmap",
  };
  let data;
  if (sweep.mode === "grid") {
    const cells = sy.values.map((y) => sx.values.map((x) => {
      const point = points.get(pointKey(sweep, { [sx.path]: x, [sy.path]: y }));
      return point?.val ? point.val.mean : null;
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
        customdata: [runsData(best.run_ids)], showlegend: false,
        hovertemplate: `best mean: ${best.label}<br>${loss(best.mean)}<extra></extra>`,
      });
    }
    layout.xaxis = { title: { text: sx.path }, type: "category" };
    layout.yaxis = { title: { text: sy.path }, type: "category" };
  } else {
    const shown = runs.filter((run) => has(run.best_val_data_loss));
    data = [{
      type: "scatter", mode: "markers", x: shown.map((run) => sx.position(run.point[sx.path])),
      y: shown.map((run) => sy.position(run.point[sy.path])), text: shown.map((run) => runText(sweep, run)),
      customdata: shown.map((run) => run.id),
      marker: { size: 12, color: shown.map((run) => run.best_val_data_loss), colorscale: "Viridis", reversescale: true,
        showscale: true, colorbar: { title: { text: "best val<br>data loss" } } },
      hovertemplate: "%{text}<br>%{marker.color:.4g}<extra></extra>",
    }];
    layout.xaxis = { title: { text: sx.path }, type: sx.log ? "log" : "linear" };
    layout.yaxis = { title: { text: sy.path }, type: sy.log ? "log" : "linear" };
  }
  react(div, data, layout);
}

// Three or more axes: one line per run through every setting and its best val_data_loss
// (Plotly's parcoords, drawn with WebGL); without WebGL, the table of the points.
export async function drawParcoords(sweep, runs, summary, parent) {
  const note = el("p", { class: "chart-note muted", id: "parcoords-note", hidden: true });
  const fallback = el("div", { class: "points-table", id: "parcoords-fallback", hidden: true });
  const { card, div } = chartCard(parent, "chart-parcoords", { before: [note] });
  if (!card.querySelector("#parcoords-fallback")) card.append(fallback);
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
    ...BASE_LAYOUT, title: title("Every setting of every run, coloured by its best val_data_loss"), height: 460,
    margin: { l: 80, r: 80, t: 80, b: 30 }, uirevision: "chart-parcoords",
  };
  const drawn = await reactIfDrawable(div, data, layout, CONFIG);
  div.hidden = !drawn;
  const table = card.querySelector("#parcoords-fallback");
  const line = card.querySelector("#parcoords-note");
  table.hidden = drawn;
  line.hidden = drawn;
  if (drawn) return;
  line.textContent = "This browser draws no WebGL, which the parallel-coordinates chart needs: "
    + "here are the points instead, coloured by their loss (click a heading to sort).";
  pointsTable(sweep, runs, summary, table);
}

// Reversed Viridis, as the charts colour a loss: yellow is low, purple high.
const VIRIDIS = [[253, 231, 37], [94, 201, 98], [33, 145, 140], [59, 82, 139], [68, 1, 84]];
function lossColor(fraction) {
  const at = Math.min(Math.max(fraction, 0), 1) * (VIRIDIS.length - 1);
  const low = Math.floor(at);
  const high = Math.min(low + 1, VIRIDIS.length - 1);
  const rgb = VIRIDIS[low].map((channel, i) => Math.round(channel + (VIRIDIS[high][i] - channel) * (at - low)));
  return { background: `rgb(${rgb.join(",")})`, color: at >= 2 ? "#fff" : "#1d2330" };
}

const tableSort = { column: "loss", ascending: true };

function pointsTable(sweep, runs, summary, container) {
  const sides = new Map((summary?.points ?? []).map((point) => [pointKey(sweep, point.point), point.side]));
  const bestKey = summary?.best ? pointKey(sweep, summary.best.point) : null;
  const points = sweepPoints(sweep, runs).filter((point) => point.val);
  const means = points.map((point) => point.val.mean);
  const [low, high] = [Math.min(...means), Math.max(...means)];
  const columns = [
    ...sweep.axes.map((axis, index) => ({ key: axis.path, label: sweep.labels[index], value: (p) => p.point[axis.path] })),
    { key: "n", label: "seeds", value: (p) => p.val.n },
    { key: "loss", label: "best val data loss", value: (p) => p.val.mean },
  ];
  const sortBy = columns.find((column) => column.key === tableSort.column) ?? columns[columns.length - 1];
  points.sort((a, b) => (sortBy.value(a) - sortBy.value(b)) * (tableSort.ascending ? 1 : -1));
  const sortButton = (column) => el("button", { type: "button", class: "link", onclick: () => {
    tableSort.ascending = tableSort.column === column.key ? !tableSort.ascending : true;
    tableSort.column = column.key;
    pointsTable(sweep, runs, summary, container);
  } }, column.label);
  const headings = columns.map((column) => el("th", {
    class: "num sortable", scope: "col", dataset: { key: column.key },
    "aria-sort": column === sortBy ? (tableSort.ascending ? "ascending" : "descending") : "none",
  }, sortButton(column)));
  const head = el("tr", {}, headings, el("th", { scope: "col" }, "side of the U"), el("th", { scope: "col" }, "runs"));
  const rows = points.map((point) => {
    const { mean, std } = point.val;
    const colour = lossColor(high > low ? (mean - low) / (high - low) : 0);
    const counted = point.runs.map((run) => run.id);
    return el("tr", { class: point.key === bestKey ? "best" : "", dataset: { key: point.key } },
      sweep.axes.map((axis) => el("td", { class: "point" }, fmt(point.point[axis.path]))),
      el("td", { class: "num" }, point.val.n),
      el("td", { class: "num loss", style: `background:${colour.background};color:${colour.color}` },
        `${point.key === bestKey ? "★ " : ""}${loss(mean)}${has(std) ? ` ± ${loss(std)}` : ""}`),
      el("td", {}, SIDE_TEXT[sides.get(point.key)] ?? ""),
      el("td", {}, counted.map((id, i) => [i ? ", " : "", el("a", { href: `/runs/${id}` }, `#${id}`)]).flat()));
  });
  container.replaceChildren(el("table", { class: "data" }, el("thead", {}, head), el("tbody", {}, rows)));
}

// Seed repeats without axes: each epoch's mean ± std over the seeds.
export async function drawSeeds(sweep, runs, parent) {
  const { div } = chartCard(parent, "chart-seeds");
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
    const spread = (sign) => stats.map(({ mean, std }) => mean + sign * (std ?? 0));
    data.push(
      { x: epochs, y: spread(-1), type: "scatter", mode: "lines", line: { width: 0, color: metric.color },
        hoverinfo: "skip", showlegend: false, legendgroup: metric.key, name: `${metric.name} − 1 std` },
      { x: epochs, y: spread(1), type: "scatter", mode: "lines", line: { width: 0, color: metric.color },
        fill: "tonexty", fillcolor: `${metric.color}33`, hoverinfo: "skip", legendgroup: metric.key,
        name: `${metric.name} ± 1 std` },
      { x: epochs, y: stats.map(({ mean }) => mean), type: "scatter", mode: "lines", line: { color: metric.color, width: 2 },
        legendgroup: metric.key, name: `${metric.name} data loss, mean of ${runs.length} seeds`,
        hovertemplate: "%{y:.4g}<extra></extra>" },
    );
  }
  react(div, data, {
    ...BASE_LAYOUT, title: title("Data loss per epoch over the seeds (mean ± 1 std)"), height: 400,
    xaxis: { title: { text: "epoch" }, zeroline: false },
    yaxis: { title: { text: "data loss (without the penalty)" }, zeroline: false },
    hovermode: "x unified", uirevision: "chart-seeds",
  });
}
