// Per-batch series of a script run (ReglabCallback with log_every="batch" or N): one
// small chart per series, its buckets drawn as a line (each bucket's mean) over a shaded
// min-max band, so that a spike stays visible however many steps the run logged.
//
// The run page adds `<section id="batches" hidden>` and calls mountBatchChart(section, id).
// While the run is running the charts refresh every few seconds (Plotly.react with a
// fixed uirevision: zoom and hidden traces stay as they were).

/* global Plotly */
import { api, el } from "./api.js";
import { isFinal } from "./status.js";
import { colorOf } from "./charts.js";

const REFRESH_MS = 5000;

function bandColor(hex, alpha) {
  const value = parseInt(hex.slice(1), 16);
  return `rgba(${(value >> 16) & 255}, ${(value >> 8) & 255}, ${value & 255}, ${alpha})`;
}

function traces(name, series, color) {
  const exact = series.count.every((count) => count === 1);
  const line = {
    x: series.step, y: series.mean, name: exact ? name : `${name} (mean)`, mode: "lines",
    line: { color, width: 1.5 }, hovertemplate: "%{y:.4g}<extra>%{fullData.name}</extra>",
  };
  if (exact) return [line];
  return [
    {
      x: series.step, y: series.min, name: "min", mode: "lines",
      line: { width: 0.6, color: bandColor(color, 0.55) },
      showlegend: false, hovertemplate: "min %{y:.4g}<extra></extra>",
    },
    {
      x: series.step, y: series.max, name: "min-max", mode: "lines", fill: "tonexty",
      // A thin edge too: a one-bucket spike is a sliver of band, too thin to see alone.
      fillcolor: bandColor(color, 0.25), line: { width: 0.6, color: bandColor(color, 0.55) },
      hovertemplate: "max %{y:.4g}<extra></extra>",
    },
    line,
  ];
}

function layout(name, series) {
  const bucketed = series.count.some((count) => count > 1);
  const note = bucketed ? ` · ${series.points.toLocaleString()} steps in ${series.step.length} buckets` : "";
  return {
    title: { text: `${name}${note}`, font: { size: 13 }, x: 0.02, xanchor: "left" },
    height: 260,
    margin: { l: 58, r: 16, t: 34, b: 34 },
    xaxis: { title: { text: "step", standoff: 4 }, zeroline: false },
    yaxis: { zeroline: false },
    showlegend: false, // the section's note says what the line and the band are
    hovermode: "x unified",
    uirevision: "keep",
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#fff",
    font: { family: "system-ui, sans-serif", size: 12, color: "#1d2330" },
  };
}

const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

// Fetch the bucketed series and draw them; resolves to null (section left hidden) when the
// run logged no batches, else to { names, refresh(), stop() }.
export async function mountBatchChart(section, experimentId, { maxPoints = 1000 } = {}) {
  const path = `/api/experiments/${experimentId}/batches?max_points=${maxPoints}`;
  const [first, run] = await Promise.all([api(path), api(`/api/experiments/${experimentId}`)]);
  if (!Object.keys(first.series).length) return null;

  const grid = el("div", { class: "charts multiples" });
  const csv = el("a", {
    class: "button secondary", href: `/api/experiments/${experimentId}/batches.csv`, download: true,
  }, "Batches CSV");
  section.replaceChildren(
    el("h2", {}, "Per batch"),
    el("p", { class: "muted" },
      "Each line is a bucket's mean; the band spans its minimum and maximum, so no spike is lost. ",
      "Every point: ", csv, "."),
    grid,
  );
  section.hidden = false;

  const plots = new Map();
  function draw(data) {
    Object.keys(data.series).sort().forEach((name, index) => {
      const series = data.series[name];
      let plot = plots.get(name);
      if (!plot) {
        plot = el("div", { class: "chart", dataset: { series: name } });
        grid.append(el("section", { class: "chart-card" }, plot));
        plots.set(name, plot);
      }
      Plotly.react(plot, traces(name, series, colorOf(index)), layout(name, series), CONFIG);
    });
  }
  draw(first);

  let timer = null;
  async function refresh() {
    const [data, latest] = await Promise.all([api(path), api(`/api/experiments/${experimentId}`)]);
    draw(data);
    if (isFinal(latest.status)) stop();
  }
  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }
  if (!isFinal(run.status)) {
    timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  }
  return { names: [...plots.keys()], refresh, stop };
}
