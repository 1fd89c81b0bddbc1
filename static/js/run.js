// One run: live curves over SSE, its facts, test metrics, spec and downloads.
import {
  api, connectionBanner, el, followRun, formatDuration, formatNumber, formatTime, statusBadge, FINAL,
} from "./api.js";
import { Chart, ChartGroup, chartCard, colorOf } from "./charts.js";

const runId = Number(location.pathname.split("/").pop());
const group = new ChartGroup();
const banner = connectionBanner();
const TRAIN = { dash: "solid" };
const VALIDATION = { dash: "dash" };
let run = null;
let charts = null;
let lastEpoch = -1;

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
  return made;
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
  for (const [name, value] of Object.entries(values)) {
    if (name.startsWith("kernel_norm/")) {
      layerTrace(charts.norms, "kernel_norm/", name);
      charts.norms.append(name, epoch, value);
    } else if (name.startsWith("sparsity/")) {
      layerTrace(charts.sparsity, "sparsity/", name);
      charts.sparsity.append(name, epoch, value);
    } else {
      for (const chart of [charts.dataLoss, charts.score, charts.penalty, charts.loss]) {
        if (chart.trace(name)) chart.append(name, epoch, value);
      }
    }
  }
  if (values.val_data_loss !== undefined && values.data_loss !== undefined) {
    charts.gap.append("gap", epoch, values.val_data_loss - values.data_loss);
  }
  run.epochs_done = Math.max(run.epochs_done, epoch + 1);
  const validation = values.val_data_loss;
  if (validation !== undefined && (run.best_val_data_loss === null || validation < run.best_val_data_loss)) {
    run.best_val_data_loss = validation;
    run.best_epoch = epoch;
  }
  run.last_metrics = { ...run.last_metrics, ...values };
  renderFacts();
}

function fact(label, value, id) {
  return el("div", { id }, el("dt", {}, label), el("dd", {}, value));
}

function renderFacts() {
  const started = run.started_at ? new Date(run.started_at) : null;
  const ended = run.finished_at ? new Date(run.finished_at) : null;
  const seconds = started ? ((ended ?? new Date()) - started) / 1000 : null;
  const best = run.best_epoch === null ? "–" : `${formatNumber(run.best_val_data_loss)} at epoch ${run.best_epoch}`;
  document.querySelector("#facts").replaceChildren(
    fact("Epoch", `${run.epochs_done} / ${run.epochs_total}`, "fact-epoch"),
    fact("Best val data loss", best, "fact-best"),
    fact("Device", run.device ?? "–", "fact-device"),
    fact("Attempt", `${run.attempt} of ${run.max_attempts}`),
    fact("Created", formatTime(run.created_at)),
    fact("Training time", seconds === null ? "–" : formatDuration(seconds)),
    fact("Dataset", run.spec.dataset.name),
    fact("Loop", run.spec.training.loop === "fit" ? "model.fit" : "GradientTape"),
  );
}

function renderRun() {
  document.title = `${run.name} · reglab`;
  document.querySelector("#run-name").textContent = `#${run.id} ${run.name}`;
  document.querySelector("#run-status").replaceChildren(statusBadge(run.status));
  document.querySelector("#run-regularization").textContent = run.regularization;
  document.querySelector("#run-notes").textContent = run.spec.notes ?? "";
  document.querySelector("#cancel").hidden = FINAL.has(run.status);
  document.querySelector("#clone").href = `/new?clone=${run.id}`;
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
  const tests = document.querySelector("#test-metrics");
  if (run.test_metrics) {
    tests.className = "";
    tests.replaceChildren(el("dl", { class: "facts" },
      Object.entries(run.test_metrics).map(([name, value]) => fact(name, formatNumber(value)))));
  }
  document.querySelector("#spec").textContent = JSON.stringify(run.spec, (key, value) => (value === null ? undefined : value), 2);
  renderFacts();
}

async function reload() {
  run = await api(`/api/experiments/${runId}`);
  renderRun();
}

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
      Object.assign(run, { status: data.status, device: data.device ?? run.device, attempt: data.attempt,
        error: data.error, error_epoch: data.error_epoch });
      renderRun();
      if (FINAL.has(data.status) || data.status === "running") reload();
    },
    onConnection: (connected) => banner.set(connected),
  });
  // Keep the training time ticking while the run trains.
  setInterval(() => {
    if (run.status === "running") renderFacts();
  }, 1000);
}

start();
