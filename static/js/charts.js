// Live Plotly charts that never reset what the person is looking at.
//
// Points are buffered and drawn with Plotly.extendTraces at most ~10 times a second, so
// zoom, hidden traces, hover and scroll stay as they were when a point arrives. Every
// chart of a page shares one ChartGroup: log scale, smoothing and pause apply to all.

/* global Plotly */

export const PALETTE = [
  "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
  "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
];
export const colorOf = (index) => PALETTE[index % PALETTE.length];
const REDRAW_MS = 100;

// Exponential moving average, debiased at the start as TensorBoard does.
export function smooth(values, weight) {
  if (!weight) return values.slice();
  const out = [];
  let last = 0;
  let count = 0;
  for (const value of values) {
    if (value === null || value === undefined || !Number.isFinite(value)) {
      out.push(null);
      continue;
    }
    last = last * weight + (1 - weight) * value;
    count += 1;
    out.push(last / (1 - weight ** count));
  }
  return out;
}

class Trace {
  constructor(definition) {
    this.definition = definition;
    this.x = [...(definition.x ?? [])];
    this.y = [...(definition.y ?? [])];
    this.pendingX = [];
    this.pendingY = [];
  }
}

export class Chart {
  constructor(container, { title, yTitle, xTitle = "epoch", group, height = 300, legend = true }) {
    this.container = container;
    this.group = group;
    this.traces = new Map();
    this.order = [];
    this.layout = {
      title: { text: title, font: { size: 14 }, x: 0.02, xanchor: "left" },
      height,
      margin: { l: 58, r: 16, t: 36, b: 34 },
      xaxis: { title: { text: xTitle, standoff: 4 }, zeroline: false },
      yaxis: { title: { text: yTitle ?? "" }, type: group?.log ? "log" : "linear", zeroline: false },
      showlegend: legend,
      hovermode: "x unified",
      uirevision: "keep",
      legend: { orientation: "h", x: 1, xanchor: "right", y: 1.0, yanchor: "bottom", font: { size: 11 } },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "#fff",
      font: { family: "system-ui, sans-serif", size: 12, color: "#1d2330" },
    };
    this.config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"],
      toImageButtonOptions: { format: "png", filename: (title ?? "chart").replace(/\W+/g, "-") } };
    this.hoverX = null;
    this.drawn = false;
    group?.add(this);
  }

  trace(key) {
    return this.traces.get(key);
  }

  // Add a trace (no redraw until the next flush or draw).
  addTrace(key, definition) {
    if (this.traces.has(key)) return this.traces.get(key);
    const trace = new Trace(definition);
    this.traces.set(key, trace);
    this.order.push(key);
    this.dirty = true;
    this.group?.schedule();
    return trace;
  }

  append(key, x, y) {
    const trace = this.traces.get(key);
    if (!trace) return;
    trace.pendingX.push(x);
    trace.pendingY.push(y);
    this.group?.schedule();
  }

  plotData() {
    const weight = this.group?.smoothing ?? 0;
    return this.order.map((key) => {
      const { definition, x, y } = this.traces.get(key);
      return {
        x: x.slice(),
        y: smooth(y, weight),
        name: definition.name,
        type: "scatter",
        mode: definition.mode ?? "lines",
        line: { color: definition.color, dash: definition.dash ?? "solid", width: definition.width ?? 2 },
        legendgroup: definition.legendgroup,
        showlegend: definition.showlegend ?? true,
        hovertemplate: "%{y:.4g}",
        visible: definition.visible ?? true,
        fill: definition.fill,
        fillcolor: definition.fillcolor,
      };
    });
  }

  // A full draw (first time, new traces, smoothing changed). Plotly.react with uirevision
  // keeps the zoom and the traces hidden from the legend.
  draw() {
    for (const trace of this.traces.values()) {
      trace.x.push(...trace.pendingX.splice(0));
      trace.y.push(...trace.pendingY.splice(0));
    }
    this.layout.yaxis.type = this.group?.log ? "log" : "linear";
    Plotly.react(this.container, this.plotData(), this.layout, this.config);
    if (!this.drawn) {
      this.drawn = true;
      this.container.on("plotly_hover", (event) => {
        this.hoverX = event.points?.[0]?.x ?? null;
      });
      this.container.on("plotly_unhover", () => {
        this.hoverX = null;
      });
    }
    this.dirty = false;
    this.restoreHover();
  }

  // Draw only the new points.
  flush() {
    if (!this.drawn || this.dirty) {
      this.draw();
      return;
    }
    const indices = [];
    const xs = [];
    const ys = [];
    const weight = this.group?.smoothing ?? 0;
    this.order.forEach((key, index) => {
      const trace = this.traces.get(key);
      if (!trace.pendingX.length) return;
      const before = trace.y.length;
      trace.x.push(...trace.pendingX.splice(0));
      trace.y.push(...trace.pendingY.splice(0));
      const shown = weight ? smooth(trace.y, weight).slice(before) : trace.y.slice(before);
      indices.push(index);
      xs.push(trace.x.slice(before));
      ys.push(shown);
    });
    if (!indices.length) return;
    Plotly.extendTraces(this.container, { x: xs, y: ys }, indices);
    this.restoreHover();
  }

  restoreHover() {
    if (this.hoverX !== null && Plotly.Fx?.hover) {
      try {
        Plotly.Fx.hover(this.container, { xval: this.hoverX }, "xy");
      } catch {
        // The hovered point may be gone; the next mouse move shows a new one.
      }
    }
  }

  // Show or hide traces (e.g. every trace of one run) without touching the rest.
  setVisible(keys, visible) {
    const indices = [];
    for (const key of keys) {
      const trace = this.traces.get(key);
      if (!trace) continue;
      trace.definition.visible = visible;
      indices.push(this.order.indexOf(key));
    }
    if (this.drawn && indices.length) Plotly.restyle(this.container, { visible }, indices);
  }

  // Forget every point, keeping the traces, their visibility and the zoom (a retried run
  // trains again from epoch 0).
  clear() {
    for (const trace of this.traces.values()) {
      trace.x = [];
      trace.y = [];
      trace.pendingX = [];
      trace.pendingY = [];
    }
    this.dirty = true;
    this.group?.schedule();
  }

  pointCount(key) {
    return this.traces.get(key)?.x.length ?? 0;
  }
}

// The charts of one page: one redraw schedule, one log/smoothing/pause state.
export class ChartGroup {
  constructor() {
    this.charts = [];
    this.log = false;
    this.smoothing = 0;
    this.paused = false;
    this.timer = null;
    this.lastFlush = 0;
  }

  add(chart) {
    this.charts.push(chart);
  }

  schedule() {
    if (this.paused || this.timer !== null) return;
    const wait = Math.max(0, REDRAW_MS - (performance.now() - this.lastFlush));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.lastFlush = performance.now();
      for (const chart of this.charts) chart.flush();
    }, wait);
  }

  setLog(log) {
    this.log = log;
    for (const chart of this.charts) {
      if (chart.drawn) Plotly.relayout(chart.container, { "yaxis.type": log ? "log" : "linear" });
    }
  }

  setSmoothing(weight) {
    this.smoothing = weight;
    for (const chart of this.charts) if (chart.drawn) chart.draw();
  }

  setPaused(paused) {
    this.paused = paused;
    if (!paused) this.schedule();
  }

  // Controls shown above the charts.
  controls() {
    const wrap = document.createElement("div");
    wrap.className = "chart-controls";

    const log = document.createElement("label");
    const logBox = document.createElement("input");
    logBox.type = "checkbox";
    logBox.id = "log-scale";
    logBox.addEventListener("change", () => this.setLog(logBox.checked));
    log.append(logBox, " log scale");

    const smoothing = document.createElement("label");
    smoothing.className = "smoothing";
    const slider = document.createElement("input");
    slider.type = "range";
    slider.id = "smoothing";
    slider.min = "0";
    slider.max = "0.99";
    slider.step = "0.01";
    slider.value = "0";
    const value = document.createElement("output");
    value.textContent = "0.00";
    slider.addEventListener("input", () => {
      value.textContent = Number(slider.value).toFixed(2);
      this.setSmoothing(Number(slider.value));
    });
    smoothing.append("smoothing ", slider, value);

    const pause = document.createElement("button");
    pause.type = "button";
    pause.id = "pause";
    pause.className = "secondary";
    pause.textContent = "Pause live updates";
    pause.addEventListener("click", () => {
      this.setPaused(!this.paused);
      pause.textContent = this.paused ? "Resume live updates" : "Pause live updates";
      pause.classList.toggle("active", this.paused);
    });

    wrap.append(log, smoothing, pause);
    return wrap;
  }
}

// A chart in a card with a stable test id.
export function chartCard(parent, id) {
  const card = document.createElement("section");
  card.className = "chart-card";
  const plot = document.createElement("div");
  plot.className = "chart";
  plot.id = id;
  card.append(plot);
  parent.append(card);
  return plot;
}
