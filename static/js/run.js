// One run: live curves over SSE, its facts, test metrics, spec and downloads; the
// regularization verdict, weight histograms by epoch and the λ schedule's scale; its tags
// and notes, edited in place. A chart with nothing to draw says why instead.
import { api, connectionBanner, el, followRun, formatDuration, formatNumber, formatTime } from "./api.js";
import { isFinal, statusBadge } from "./status.js";
import { Chart, ChartGroup, chartCard, colorOf } from "./charts.js";
import { againstText, relativeText, verdictText } from "./verdicts.js";
import { RunNotes } from "./run-notes.js";
import { ChartSections, renderConfig, renderTestMetrics } from "./run-sections.js";

const runId = Number(location.pathname.split("/").pop());
const group = new ChartGroup();
const banner = connectionBanner();
const TRAIN = { dash: "solid" };
const VALIDATION = { dash: "dash" };
let run = null;
let charts = null;
let sections = null;
let lastEpoch = -1;
let streamed = false; // whether an epoch came over the event stream yet

function buildCharts(classification) {
  const parent = document.querySelector("#charts");
  document.querySelector("#controls").replaceChildren(group.controls());
  const make = (id, title, yTitle) => new Chart(chartCard(parent, id), { title, yTitle, group });
  const made = {
    dataLoss: make("chart-data-loss", "Data loss (without the penalty)", "loss"),
    score: make("chart-score", classification ? "Accuracy" : "Mean absolute error",
      classification ? "accuracy" : "MAE"),
    gap: make("chart-gap", "Generalization gap (validation − training data loss)", "gap"),
    penalty: make("chart-penalty", "Penalty λ·R(w) in the loss", "penalty"),
    loss: make("chart-loss", "Loss as Keras reports it (penalty included)", "loss"),
    norms: make("chart-norms", "Kernel L2 norm per layer", "‖W‖₂"),
    sparsity: make("chart-sparsity", "Sparsity per layer (share of |w| < 1e-3)", "fraction"),
  };
  const scoreName = classification ? "accuracy" : "mae";
  made.dataLoss.addTrace("data_loss", { name: "training", color: colorOf(0), ...TRAIN });
  made.dataLoss.addTrace("val_data_loss", { name: "validation", color: colorOf(0), ...VALIDATION });
  made.score.addTrace(scoreName, { name: "training", color: colorOf(2), ...TRAIN });
  made.score.addTrace(`val_${scoreName}`, { name: "validation", color: colorOf(2), ...VALIDATION });
  made.gap.addTrace("gap", { name: "val − train data loss", color: colorOf(1) });
  made.penalty.addTrace("reg_loss", { name: "penalty", color: colorOf(4) });
  made.loss.addTrace("loss", { name: "training", color: colorOf(3), ...TRAIN });
  made.loss.addTrace("val_loss", { name: "validation", color: colorOf(3), ...VALIDATION });
  sections = new ChartSections(made);
  if (run.spec?.training?.schedule) scaleChart(made);
  return made;
}

// The λ schedule's scale, for runs with a schedule (or any run that streams reg_scale).
function scaleChart(made = charts) {
  if (made.scale) return made.scale;
  made.scale = new Chart(chartCard(document.querySelector("#charts"), "chart-reg-scale"),
    { title: "λ schedule: scale of every penalty", yTitle: "scale", group });
  made.scale.addTrace("reg_scale", { name: "reg_scale", color: colorOf(5) });
  sections.prepare("scale", made.scale);
  return made.scale;
}

const layerColors = new Map();
function layerTrace(chart, prefix, name) {
  const layer = name.slice(prefix.length);
  if (!layerColors.has(layer)) layerColors.set(layer, colorOf(layerColors.size));
  chart.addTrace(name, { name: layer, color: layerColors.get(layer) });
}

function onMetrics({ epoch, values }) {
  if (epoch <= lastEpoch) return;
  lastEpoch = epoch;
  streamed = true;
  for (const [name, value] of Object.entries(values)) {
    if (name.startsWith("kernel_norm/")) {
      layerTrace(charts.norms, "kernel_norm/", name);
      charts.norms.append(name, epoch, value);
      sections.fill("norms");
    } else if (name.startsWith("sparsity/")) {
      layerTrace(charts.sparsity, "sparsity/", name);
      charts.sparsity.append(name, epoch, value);
      sections.fill("sparsity");
    } else if (name === "reg_scale") {
      scaleChart().append(name, epoch, value);
      sections.fill("scale");
    } else {
      for (const key of ["dataLoss", "score", "penalty", "loss"]) {
        if (!charts[key].trace(name)) continue;
        charts[key].append(name, epoch, value);
        sections.fill(key);
      }
    }
  }
  if (values.val_data_loss !== undefined && values.data_loss !== undefined) {
    charts.gap.append("gap", epoch, values.val_data_loss - values.data_loss);
    sections.fill("gap");
  }
  run.epochs_done = Math.max(run.epochs_done, epoch + 1);
  const validation = values.val_data_loss;
  if (validation !== undefined && (run.best_val_data_loss === null || validation < run.best_val_data_loss)) {
    run.best_val_data_loss = validation;
    run.best_epoch = epoch;
  }
  run.last_metrics = { ...run.last_metrics, ...values };
  renderFacts();
  refreshDiagnostics();
}

// A retried run trains again from epoch 0: its curves, marker and histograms start over.
function restart() {
  lastEpoch = -1;
  for (const chart of group.charts) chart.clear();
  sections.reset();
  Object.assign(run, { epochs_done: 0, best_val_data_loss: null, best_epoch: null, last_metrics: {} });
  markOverfitting(null);
  histograms.epochs = [];
  histograms.layers = {};
  document.querySelector("#histogram-grid").replaceChildren();
  document.querySelector("#histograms").hidden = true;
  renderFacts();
  refreshDiagnostics({ now: true });
}

// --- verdict and histograms ---------------------------------------------------------

let diagnosticsTimer = null;
let diagnosticsAt = 0;
// Fetch the verdict and the histograms again, at most every two seconds while metrics flow.
function refreshDiagnostics({ now = false } = {}) {
  if (diagnosticsTimer) return;
  const wait = now ? 0 : Math.max(0, diagnosticsAt + 2000 - Date.now());
  diagnosticsTimer = setTimeout(async () => {
    diagnosticsTimer = null;
    diagnosticsAt = Date.now();
    await Promise.all([loadVerdict(), loadHistograms()]);
  }, wait);
}

async function loadVerdict() {
  let verdict;
  try {
    verdict = await api(`/api/experiments/${runId}/verdict`);
  } catch {
    return; // the next epoch tries again
  }
  const badge = document.querySelector("#verdict");
  badge.textContent = verdictText(verdict);
  badge.className = `badge verdict verdict-${verdict.verdict}`;
  badge.title = verdict.reason;
  const hint = document.querySelector("#verdict-hint");
  hint.textContent = `${verdict.hint} — ${verdict.reason}`;
  hint.title = hint.textContent;
  showRelative(verdict.relative ?? null);
  markOverfitting(verdict.verdict === "overfitting" ? verdict.from_epoch : null);
}

// A sweep member judged against its siblings: "under-fitting vs l2=0.0001", its hint, and
// the point (and runs) it was judged against.
function showRelative(relative) {
  const line = document.querySelector("#verdict-relative-line");
  line.hidden = relative === null;
  if (relative === null) return;
  const badge = document.querySelector("#verdict-relative");
  badge.textContent = relativeText(relative);
  badge.className = `badge verdict verdict-${relative.verdict}`;
  badge.title = relative.reason;
  const against = relative.against.run_ids.map((id, index) => [index ? ", " : "", el("a", { href: `/runs/${id}` }, `#${id}`)]);
  const hint = document.querySelector("#verdict-relative-hint");
  hint.replaceChildren(`${relative.hint} — ${relative.reason} (against ${relative.against.label}: `,
    relative.against.run_ids.length === 1 ? "run " : "the mean of runs ", ...against.flat(), ")");
  hint.title = `${relative.hint} — ${relative.reason} (against ${relative.against.label}, ${againstText(relative.against)})`;
}

// A dotted vertical line on the data-loss chart where over-fitting starts.
function markOverfitting(epoch) {
  const chart = charts.dataLoss;
  const shapes = epoch === null ? [] : [{
    type: "line", xref: "x", yref: "paper", x0: epoch, x1: epoch, y0: 0, y1: 1,
    line: { color: "#c0392b", width: 1.5, dash: "dot" },
  }];
  const annotations = epoch === null ? [] : [{
    x: epoch, xref: "x", y: 1, yref: "paper", yanchor: "bottom", showarrow: false,
    text: `over-fitting from ${epoch}`, font: { size: 11, color: "#c0392b" },
  }];
  if (JSON.stringify(chart.layout.shapes ?? []) === JSON.stringify(shapes)) return;
  chart.layout.shapes = shapes;
  chart.layout.annotations = annotations;
  chart.dirty = true;
  group.schedule();
}

const histograms = { epochs: [], layers: {}, followLatest: true, plotted: new Set() };

async function loadHistograms() {
  let body;
  try {
    body = await api(`/api/experiments/${runId}/histograms`);
  } catch {
    return;
  }
  if (body.epochs.length === histograms.epochs.length) return;
  histograms.epochs = body.epochs;
  histograms.layers = body.layers;
  const slider = document.querySelector("#histogram-epoch");
  document.querySelector("#histograms").hidden = body.epochs.length === 0;
  slider.max = String(Math.max(0, body.epochs.length - 1));
  if (histograms.followLatest) slider.value = slider.max;
  drawHistograms();
}

function drawHistograms() {
  const slider = document.querySelector("#histogram-epoch");
  const index = Number(slider.value);
  const epoch = histograms.epochs[index];
  document.querySelector("#histogram-epoch-label").textContent = epoch ?? "–";
  document.querySelector("#histogram-note").textContent =
    `${histograms.epochs.length} snapshot${histograms.epochs.length === 1 ? "" : "s"}: epochs ${histograms.epochs.join(", ")}`;
  const grid = document.querySelector("#histogram-grid");
  Object.entries(histograms.layers).forEach(([layer, perEpoch], position) => {
    const id = `histogram-${layer.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    let plot = document.getElementById(id);
    if (!plot) {
      plot = el("div", { class: "chart histogram", id, dataset: { layer } });
      grid.append(el("section", { class: "chart-card" }, plot));
    }
    const histogram = perEpoch[index];
    const edges = histogram?.edges ?? [];
    const centers = edges.slice(0, -1).map((edge, i) => (edge + edges[i + 1]) / 2);
    const widths = edges.slice(0, -1).map((edge, i) => edges[i + 1] - edge);
    Plotly.react(plot, [{
      type: "bar", x: centers, y: histogram?.counts ?? [], width: widths,
      marker: { color: colorOf(position) }, hovertemplate: "w ≈ %{x:.3g}: %{y}<extra></extra>",
    }], {
      title: { text: `${layer} kernel`, font: { size: 13 }, x: 0.02, xanchor: "left" },
      height: 220, margin: { l: 44, r: 10, t: 30, b: 30 }, bargap: 0.02,
      xaxis: { title: { text: "weight", standoff: 2 }, zeroline: true },
      yaxis: { title: { text: "count" } },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fff",
      font: { family: "system-ui, sans-serif", size: 11, color: "#1d2330" },
    }, { responsive: true, displaylogo: false });
  });
  grid.dataset.epoch = epoch ?? "";
}

function fact(label, value, id) {
  return el("div", { id }, el("dt", {}, label), el("dd", {}, value));
}

function renderFacts() {
  const started = run.started_at ? new Date(run.started_at) : null;
  const ended = run.finished_at ? new Date(run.finished_at) : null;
  const seconds = started ? ((ended ?? new Date()) - started) / 1000 : null;
  const best = run.best_epoch === null ? "–" : `${formatNumber(run.best_val_data_loss)} at epoch ${run.best_epoch}`;
  document.querySelector("#facts").replaceChildren(...[
    fact("Epoch", `${run.epochs_done} / ${run.epochs_total}`, "fact-epoch"),
    fact("Best val data loss", best, "fact-best"),
    fact("Device", run.device ?? (isFinal(run.status) ? "not reported" : "–"), "fact-device"),
    fact("Attempt", `${run.attempt} of ${run.max_attempts}`),
    fact("Created", formatTime(run.created_at)),
    fact("Training time", seconds === null ? "–" : formatDuration(seconds)),
    fact("Dataset", run.spec?.dataset.name ?? run.script?.dataset ?? "–"),
    fact("Loop", loopName()),
    run.pack ? fact("Trained in", packLink(), "fact-pack") : null,
  ].filter(Boolean));
  sections.explain(run, { streamed });
}

// A packed run: one model trained it with the sweep's points that differ only in penalty
// strengths and dropout rates, each member exactly as it would train alone.
function packLink() {
  const { id, members, index } = run.pack;
  return el("a", {
    href: `/sweeps/${run.sweep_id}`,
    title: "One model trained these sweep points together (they differ only in penalty strengths "
      + "and dropout rates); each member trains exactly as its own run would.",
  }, `pack #${id}, member ${index + 1} of ${members}`);
}

function loopName() {
  if (!run.spec) return `your script${run.script?.framework ? ` (${run.script.framework})` : ""}`;
  return run.spec.training.loop === "fit" ? "model.fit" : "GradientTape";
}

function renderRun() {
  document.title = `${run.name} · reglab`;
  document.querySelector("#run-name").textContent = `#${run.id} ${run.name}`;
  document.querySelector("#run-status").replaceChildren(statusBadge(run.status));
  document.querySelector("#run-regularization").textContent = run.regularization;
  const command = document.querySelector("#run-command");
  command.hidden = !run.script?.command;
  command.textContent = run.script?.command ?? "";
  notes.render(run);
  document.querySelector("#cancel").hidden = isFinal(run.status) || !run.spec;
  const clone = document.querySelector("#clone");
  clone.hidden = !run.spec; // a script run has no spec to clone
  clone.href = `/new?clone=${run.id}`;
  document.querySelector("#download-csv").href = `/api/experiments/${run.id}/metrics?format=csv`;
  const model = document.querySelector("#download-model");
  model.hidden = !run.has_model;
  model.href = `/api/experiments/${run.id}/model`;
  const error = document.querySelector("#run-error");
  error.hidden = !run.error;
  if (run.error) {
    const where = run.error_epoch === null ? "" : ` (stopped at epoch ${run.error_epoch})`;
    error.textContent = `${run.status === "failed" ? "Failed" : "Error"}: ${run.error}${where}`;
  }
  renderTestMetrics(run, fact);
  renderConfig(run);
  sections.captions(run);
  document.querySelector("#spec-title").textContent = run.spec ? "Spec" : "What the script told";
  document.querySelector("#spec").textContent = JSON.stringify(run.spec ?? { script: run.script },
    (key, value) => (value === null ? undefined : value), 2);
  renderFacts();
}

async function reload() {
  const fresh = await api(`/api/experiments/${runId}`);
  // Epochs that came over the stream while this request was on its way stay counted.
  if (fresh.attempt === run.attempt) {
    fresh.epochs_done = Math.max(fresh.epochs_done, run.epochs_done);
    const live = run.best_val_data_loss;
    if (live !== null && (fresh.best_val_data_loss === null || live < fresh.best_val_data_loss)) {
      Object.assign(fresh, { best_val_data_loss: live, best_epoch: run.best_epoch });
    }
  }
  run = fresh;
  renderRun();
}

// What a script sends after its last epoch (its test metrics, from log_test) may arrive
// after the final status, when the event stream has ended: look again a little later.
let settling = false;
function settle() {
  if (settling) return;
  settling = true;
  for (const wait of [1500, 5000]) {
    setTimeout(() => {
      reload().catch(() => {});
      refreshDiagnostics({ now: true });
    }, wait);
  }
}

const notes = new RunNotes(runId, {
  onSaved: (saved) => {
    Object.assign(run, { tags: saved.tags, notes: saved.notes });
    notes.render(run);
  },
});

async function start() {
  try {
    run = await api(`/api/experiments/${runId}`);
  } catch (error) {
    document.querySelector("main").replaceChildren(
      el("h1", {}, "Run not found"), el("p", { class: "muted" }, error.message), el("a", { href: "/" }, "Back to the runs"));
    return;
  }
  const classification = run.task === "classification";
  charts = buildCharts(classification);
  renderRun();
  refreshDiagnostics({ now: true });
  document.querySelector("#histogram-epoch").addEventListener("input", (event) => {
    histograms.followLatest = event.target.value === event.target.max;
    drawHistograms();
  });
  // Per-batch charts of script runs come from another module; the page works without it.
  const batches = document.querySelector("#batches");
  import("./batches.js").then((module) => module.mountBatchChart(batches, runId)).catch(() => {});
  document.querySelector("#cancel").addEventListener("click", async (event) => {
    event.target.disabled = true;
    try {
      await api(`/api/experiments/${runId}/cancel`, { method: "POST" });
    } catch (error) {
      alert(error.message);
    }
    event.target.disabled = false;
  });
  followRun(runId, {
    onMetrics,
    onStatus: (data) => {
      if (data.attempt > run.attempt) restart();
      Object.assign(run, { status: data.status, device: data.device ?? run.device, attempt: data.attempt,
        error: data.error, error_epoch: data.error_epoch });
      renderRun();
      if (isFinal(data.status) || data.status === "running") reload();
      if (isFinal(data.status)) {
        refreshDiagnostics({ now: true });
        settle();
      }
    },
    onConnection: (connected) => banner.set(connected),
  });
  // Keep the training time ticking while the run trains.
  setInterval(() => {
    if (run.status === "running") renderFacts();
  }, 1000);
}

start();
