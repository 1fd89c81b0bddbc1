// What a run page shows around its charts: each chart shown only once it has a point
// (else a short card saying why it is empty), the script's own words for its series
// under the charts that draw them, a script's config, and its test metrics or why there
// are none.
/* global Plotly */
import { el, formatNumber } from "./api.js";
import { isFinal } from "./status.js";

// Each chart's series, by the names the run streams (for its caption and its reason).
const SERIES = {
  dataLoss: ["data_loss", "val_data_loss"],
  gap: ["data_loss", "val_data_loss"],
  penalty: ["reg_loss"],
  loss: ["loss", "val_loss"],
};

function emptyReason(key, run, classification) {
  const script = run.source === "script";
  const by = script ? "the script reported" : "the run reported";
  switch (key) {
    case "dataLoss":
      return script
        ? "The script reported no data_loss or val_data_loss: ReglabCallback reports them for a Keras "
          + "model; a custom loop passes run.log(epoch, data_loss=…, val_data_loss=…)."
        : "The run reported no data_loss or val_data_loss.";
    case "score":
      return classification ? `${by[0].toUpperCase()}${by.slice(1)} no accuracy or val_accuracy.`
        : `${by[0].toUpperCase()}${by.slice(1)} no mae or val_mae.`;
    case "gap":
      return "The gap needs data_loss and val_data_loss at the same epoch.";
    case "penalty":
      return script
        ? "The script reported no reg_loss: its model has no penalty, or a custom loop did not "
          + "pass run.log(epoch, reg_loss=…)."
        : "The run reported no reg_loss: its model has no penalty.";
    case "loss":
      return `${by[0].toUpperCase()}${by.slice(1)} no loss or val_loss.`;
    case "norms":
    case "sparsity":
      return script
        ? "The script reported no per-layer statistics (ReglabCallback(layer_statistics=True) "
          + "logs each kernel's norm and sparsity)."
        : "The run reported no per-layer statistics.";
    default:
      return "Nothing was reported for this chart.";
  }
}

export class ChartSections {
  // `charts`: the page's charts by key (run.js's buildCharts); `prepare` adds one later.
  constructor(charts) {
    this.charts = { ...charts };
    this.filled = new Set();
    this.notes = new Map();
    for (const [key, chart] of Object.entries(charts)) this.prepare(key, chart);
  }

  // A chart starts hidden behind a card that will say why, until its first point.
  prepare(key, chart) {
    this.charts[key] = chart;
    const card = chart.container.parentElement;
    const note = el("div", { class: "chart-note", hidden: true },
      el("strong", {}, chart.layout.title.text), el("p", { class: "muted" }));
    card.append(note);
    this.notes.set(key, note);
    chart.container.hidden = true;
    card.classList.add("empty");
  }

  // A chart drew its first point: show it (drawn while hidden, it takes its width now).
  fill(key) {
    if (this.filled.has(key) || !this.charts[key]) return;
    this.filled.add(key);
    const chart = this.charts[key];
    chart.container.hidden = false;
    chart.container.parentElement.classList.remove("empty");
    this.notes.get(key).hidden = true;
    if (chart.drawn) requestAnimationFrame(() => Plotly.Plots.resize(chart.container));
    document.querySelector("#charts-note").hidden = true;
    document.querySelector("#charts").hidden = false;
    document.querySelector("#controls").hidden = false;
  }

  // A retried run draws again from epoch 0: every chart waits for its first point again.
  reset() {
    for (const key of this.filled) {
      this.charts[key].container.hidden = true;
      this.charts[key].container.parentElement.classList.add("empty");
    }
    this.filled.clear();
  }

  // Say why each empty chart is empty; with no point at all, one line for every chart.
  explain(run, { streamed }) {
    const none = this.filled.size === 0;
    const note = document.querySelector("#charts-note");
    document.querySelector("#charts").hidden = none;
    document.querySelector("#controls").hidden = none;
    note.hidden = !none;
    if (none) {
      note.textContent = !streamed && run.epochs_done > 0 ? "Loading the curves…"
        : isFinal(run.status) ? "No epoch was stored: the run ended before its first epoch did."
          : "No epoch yet: the curves appear with the first one.";
      return;
    }
    const classification = run.task === "classification";
    for (const [key, box] of this.notes) {
      if (this.filled.has(key)) continue;
      box.hidden = false;
      box.querySelector("p").textContent = emptyReason(key, run, classification);
    }
  }

  // The script's own description of each series, under the charts that draw it.
  captions(run) {
    const said = run.script?.series ?? {};
    for (const [key, names] of Object.entries(SERIES)) {
      const chart = this.charts[key];
      if (!chart) continue;
      const card = chart.container.parentElement;
      card.querySelector(".chart-caption")?.remove();
      const lines = names.filter((name) => said[name]).map((name) =>
        el("li", {}, el("code", {}, name), `: ${said[name]}`));
      if (!lines.length) continue;
      const caption = el("ul", { class: "chart-caption muted" },
        key === "gap" ? el("li", {}, "gap = val_data_loss − data_loss, each as measured:") : null, lines);
      card.insertBefore(caption, this.notes.get(key));
    }
  }
}

// A script's config (reglab.Run's `config`, or what ReglabCallback was told) as a table.
export function renderConfig(run) {
  const config = run.script?.config ?? {};
  const section = document.querySelector("#script-config");
  section.hidden = Object.keys(config).length === 0;
  document.querySelector("#config-table tbody").replaceChildren(...Object.entries(config).map(([key, value]) =>
    el("tr", { dataset: { key } }, el("td", { class: "key" }, key),
      el("td", {}, value === null ? "null" : String(value)))));
}

// The test metrics, or why there are none yet (a script sends them after training, with
// log_test; a queued run's come with its finish).
export function renderTestMetrics(run, fact) {
  const box = document.querySelector("#test-metrics");
  if (run.test_metrics && Object.keys(run.test_metrics).length) {
    box.className = "";
    box.replaceChildren(el("dl", { class: "facts" },
      Object.entries(run.test_metrics).map(([name, value]) => fact(name, formatNumber(value)))));
    return;
  }
  box.className = "muted";
  if (run.source === "script") {
    box.textContent = isFinal(run.status)
      ? "The script reported none: callback.log_test(model.evaluate(..., return_dict=True)) "
        + "sends them (run.log_test({...}) in a custom loop)."
      : "None yet: a script sends them once it has trained, with callback.log_test(...).";
  } else if (isFinal(run.status)) {
    box.textContent = run.status === "succeeded" ? "None were stored for this run."
      : `None: the run ${run.status === "failed" ? "failed" : `was ${run.status}`} before its test evaluation.`;
  } else {
    box.textContent = "Evaluated once on the held-out test split when training ends.";
  }
}
