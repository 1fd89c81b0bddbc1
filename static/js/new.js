// The "New experiment" page: an ExperimentSpec as a form whose inputs are named by their
// spec path (`model.layers.0.units`), checked against the bounds of app/spec.py before
// sending, with the server's 422 shown beside the field it names. `?clone=ID` starts from
// an existing run. It also uploads datasets (GET/POST /api/datasets), offers the regularizer
// plugins that live workers registered (GET /api/regularizers), and queues sweeps and seed
// repeats (POST /api/sweeps). User text only ever goes in as text or input values, never
// as HTML.
import { ApiError, api, el } from "./api.js";

// --- what app/spec.py says ------------------------------------------------------------

// DATASETS of app/spec.py; `noise` is worker/datasets.py's DEFAULT_NOISE.
const DATASETS = {
  digits: {
    task: "classification", classes: 10, features: 64, description: "scikit-learn 8x8 digits, 1,797",
  },
  breast_cancer: {
    task: "classification", classes: 2, features: 30, description: "scikit-learn breast cancer, 569 x 30",
  },
  wine: { task: "classification", classes: 3, features: 13, description: "scikit-learn wine, 178 x 13" },
  moons: {
    task: "classification", classes: 2, features: 2, generated: true, samples: 500, noise: 0.25,
    description: "two moons",
  },
  noisy_regression: {
    task: "regression", classes: 0, features: 1, generated: true, samples: 60, noise: 0.3,
    description: "few noisy samples of a smooth curve; over-fits readily",
  },
  periodic_series: {
    task: "classification", classes: 4, features: 64, generated: true, samples: 800, noise: 0.5,
    description: "noisy waves of four frequencies, 64 steps; classify the frequency",
  },
};
const LAYER_TYPES = ["dense", "conv1d", "conv2d"];
const ACTIVATIONS = ["relu", "tanh", "sigmoid", "elu", "selu", "gelu", "swish", "linear"];
const OPTIMIZERS = ["adam", "adamw", "sgd", "rmsprop"];
const MAX_LAYERS = 20;
// Which strengths each regularizer kind reads (_KIND_FIELDS); an unset one means 0.01.
const KIND_FIELDS = { l1: ["l1"], l2: ["l2"], l1l2: ["l1", "l2"], smoothness: ["smoothness"] };
const DEFAULT_STRENGTH = 0.01;
const STRENGTH_LABELS = { l1: "L1", l2: "L2", smoothness: "smoothness" };

// Field bounds of app/spec.py (Field(ge=…, le=…, gt=…, lt=…)), read by the HTML attributes
// and by check() alike.
const RULES = {
  name: { text: true, required: true, maxLength: 200 },
  notes: { text: true, maxLength: 10_000 },
  validation_split: { min: 0.05, max: 0.5, step: 0.05 },
  test_split: { min: 0.05, max: 0.5, step: 0.05 },
  train_fraction: { min: 0, minExclusive: true, max: 1, step: 0.05 },
  label_noise: { min: 0, max: 1, step: 0.05 },
  n_samples: { integer: true, min: 30, max: 100_000, optional: true, step: 10 },
  noise: { min: 0, max: 10, optional: true, step: 0.05 },
  units: { integer: true, min: 1, max: 4096 },
  filters: { integer: true, min: 1, max: 512 },
  kernel_size: { integer: true, min: 1, max: 16, optional: true },
  pool_size: { integer: true, min: 2, max: 8, optional: true },
  dropout: { min: 0, max: 1, maxExclusive: true, step: 0.05 },
  strength: { min: 0, max: 100, optional: true, step: "any" },
  epochs: { integer: true, min: 1, max: 1000 },
  batch_size: { integer: true, min: 1, max: 4096 },
  learning_rate: { min: 0, minExclusive: true, max: 10, step: "any" },
  seed: { integer: true, min: 0, max: 2 ** 31 - 1 },
  weight_decay: { min: 0, max: 1, step: "any" },
  warmup_epochs: { integer: true, min: 1, max: 1000 },
  final_fraction: { min: 0, max: 1, step: 0.05 },
  patience: { integer: true, min: 1, max: 1000 },
  min_delta: { min: 0, max: 1e6, step: "any" },
  histogram_every: { integer: true, min: 0, max: 1000 },
  params: { params: true }, // a plugin's "name=number, …"
  seeds: { integer: true, min: 1, max: 10 },
  draws: { integer: true, min: 1, max: 1000 },
  axisValues: { axis: true }, // a sweep axis: a list or a range, see parseAxisValues()
};
// A plugin's parameters (ParamName, ParamValue and max_length of RegularizerSpec.params).
const PARAM_NAME = /^[a-z_][a-z0-9_]{0,39}$/;
const PARAM_LIMIT = 1e6;
const MAX_PARAMS = 10;
const PLUGIN_PREFIX = "plugin:"; // a kind select's value for a plugin: "plugin:<name>"
const UPLOAD_PREFIX = "upload:"; // the dataset select's value for an upload: "upload:<id>"

// The same spec as examples/l2-dropout-digits.json (a browser test checks they agree).
const CLASSIC = {
  name: "l2-dropout",
  notes: "The classic: a dense network on digits with L2 0.01 and dropout 0.5 on both hidden layers.",
  dataset: { name: "digits", validation_split: 0.2, test_split: 0.2, train_fraction: 1.0, label_noise: 0.0 },
  model: {
    layers: [
      { type: "dense", units: 64, activation: "relu", regularizer: { kind: "l2", l2: 0.01 }, dropout: 0.5 },
      { type: "dense", units: 32, activation: "relu", regularizer: { kind: "l2", l2: 0.01 }, dropout: 0.5 },
    ],
  },
  training: { epochs: 20, batch_size: 32, optimizer: "adam", learning_rate: 0.001, seed: 0, loop: "fit" },
};
const TRAINING_DEFAULTS = {
  epochs: 20, batch_size: 32, optimizer: "adam", learning_rate: 0.001, seed: 0, loop: "fit",
  shuffle: true, weight_decay: 0, histogram_every: 5,
};
const SCHEDULE_DEFAULTS = { kind: "constant", warmup_epochs: 5, final_fraction: 0 };
const EARLY_STOPPING_DEFAULTS = { patience: 5, min_delta: 0, restore_best_weights: true };
const DATASET_FIELDS = [
  "validation_split", "test_split", "train_fraction", "label_noise", "n_samples", "noise",
];
const DATASET_DEFAULTS = { validation_split: 0.2, test_split: 0.2, train_fraction: 1, label_noise: 0 };

// --- building the form -----------------------------------------------------------------

const form = document.querySelector("#experiment-form");
const formError = form.querySelector(".form-error");
const layersTable = form.querySelector("table.layers");
const addLayerButton = form.querySelector("#add-layer");
const submitButton = form.querySelector("#submit");
const submitNote = form.querySelector("#submit-note");
const ruleOf = new WeakMap(); // input → its RULES entry
const layerRows = new WeakMap(); // tbody.layer-group → {controls, regularizer, extras, …}

function numberInput(name, rule) {
  const input = el("input", {
    type: "number",
    name,
    min: String(rule.min),
    max: String(rule.max),
    step: String(rule.step ?? (rule.integer ? 1 : "any")),
    inputmode: rule.integer ? "numeric" : "decimal",
  });
  ruleOf.set(input, rule);
  return input;
}

function selectInput(name, options) {
  return el("select", { name }, options.map(([value, label]) => el("option", { value }, label ?? value)));
}

// A `.field`: its label, the control, then the `.field-error` the 422 messages go into.
function field(label, control, { hint, className } = {}) {
  const hintNode = hint === undefined ? null : el("small", { class: "hint" }, hint);
  const wrapper = el(
    "label",
    { class: className ? `field ${className}` : "field" },
    label === null ? null : el("span", { class: "label" }, label),
    control,
    el("span", { class: "field-error", "aria-live": "polite" }),
    hintNode,
  );
  return Object.assign(wrapper, { hintNode });
}

function setValue(control, value) {
  if (control.type === "checkbox") control.checked = Boolean(value);
  else control.value = value === undefined || value === null ? "" : String(value);
}

// Only the fields that apply are shown, and only those are checked and sent.
function applies(control, yes) {
  control.disabled = !yes;
  control.closest(".field").hidden = !yes;
}

const controls = {};
function add(container, label, control, options) {
  controls[control.name] = control;
  const wrapper = field(label, control, options);
  container.append(wrapper);
  return wrapper;
}

// Run
const runFields = form.querySelector("#run-fields");
const nameInput = el("input", {
  type: "text", name: "name", maxlength: "200", autocomplete: "off", required: true,
});
ruleOf.set(nameInput, RULES.name);
add(runFields, "Name", nameInput, { className: "span-2" });
const notesInput = el("textarea", { name: "notes", rows: "2", maxlength: "10000" });
ruleOf.set(notesInput, RULES.notes);
add(runFields, "Notes", notesInput, { className: "full", hint: "Optional: what this run is meant to show." });

// Dataset
const datasetFields = form.querySelector("#dataset-fields");
const datasetSelect = selectInput("dataset.name", Object.keys(DATASETS).map((name) => [name]));
const datasetField = add(datasetFields, "Dataset", datasetSelect, { className: "span-2", hint: "" });
add(datasetFields, "Validation split", numberInput("dataset.validation_split", RULES.validation_split));
add(datasetFields, "Test split", numberInput("dataset.test_split", RULES.test_split));
add(datasetFields, "Train fraction", numberInput("dataset.train_fraction", RULES.train_fraction), {
  hint: "Share of the training split used",
});
add(datasetFields, "Label noise", numberInput("dataset.label_noise", RULES.label_noise), {
  hint: "Share of training labels corrupted",
});
const blankHint = { hint: "Blank: the default" };
add(datasetFields, "Samples", numberInput("dataset.n_samples", RULES.n_samples), blankHint);
add(datasetFields, "Noise", numberInput("dataset.noise", RULES.noise), blankHint);

// Uploaded datasets, listed after the built-ins: GET /api/datasets items by id.
const uploads = new Map();
const uploadGroup = el("optgroup", { label: "Uploaded" });
let uploadsLoaded = false;

function uploadShape(item) {
  const image = item.image ? ` (${item.image.join("×")})` : "";
  return `${item.samples} × ${item.features}${image}`;
}

function uploadLabel(item) {
  return `${item.name} — ${uploadShape(item)}, ${item.task}`;
}

// The option of upload `id`, made if missing (a clone may name an upload not listed yet).
function uploadOption(id) {
  const value = `${UPLOAD_PREFIX}${id}`;
  let option = [...uploadGroup.children].find((node) => node.value === value);
  if (!option) {
    option = el("option", { value }, `upload #${id}`);
    uploadGroup.append(option);
    if (!uploadGroup.isConnected) datasetSelect.append(uploadGroup);
  }
  return option;
}

function addUpload(item, { first = false } = {}) {
  uploads.set(item.id, item);
  const option = uploadOption(item.id);
  option.textContent = uploadLabel(item);
  if (first) uploadGroup.prepend(option);
}

function selectedUploadId() {
  const value = datasetSelect.value;
  return value.startsWith(UPLOAD_PREFIX) ? Number(value.slice(UPLOAD_PREFIX.length)) : null;
}

// What the hint says about the selected dataset, and whether n_samples and noise apply.
function datasetInfo() {
  const id = selectedUploadId();
  if (id === null) return DATASETS[datasetSelect.value];
  const item = uploads.get(id);
  if (!item) {
    const why = uploadsLoaded ? "not on the server any more" : "loading its details…";
    return { description: `upload #${id}: ${why}`, unknown: true };
  }
  const image = item.image ? `, image ${item.image.join("×")}` : "";
  return {
    task: item.task,
    classes: item.classes,
    features: item.features,
    description: `uploaded ${item.format.toUpperCase()}, ${item.samples} samples${image}`,
  };
}

function updateDataset() {
  const info = datasetInfo();
  const shape = info.task === "regression" ? "regression" : `${info.classes} classes`;
  datasetField.hintNode.textContent = info.unknown
    ? info.description
    : `${info.description} · ${shape}, ${info.features} features`;
  for (const key of ["n_samples", "noise"]) applies(controls[`dataset.${key}`], Boolean(info.generated));
  if (info.generated) {
    controls["dataset.n_samples"].placeholder = `default ${info.samples}`;
    controls["dataset.noise"].placeholder = `default ${info.noise}`;
  }
}
datasetSelect.addEventListener("change", updateDataset);

async function loadUploads() {
  try {
    const page = await api("/api/datasets?limit=500");
    for (const item of page.items) addUpload(item);
  } catch {
    return; // the built-ins still work; an upload's own errors show beside the control
  } finally {
    uploadsLoaded = true;
  }
  if (selectedUploadId() !== null) updateDataset();
}

// The upload control: a file, the CSV's target column, the task; POST /api/datasets.
const uploadFields = form.querySelector("#upload-fields");
const uploadStatus = form.querySelector("#upload-status");
const uploadFile = el("input", { type: "file", id: "upload-file", accept: ".csv,.npz,text/csv" });
const uploadFileField = field("Upload CSV/NPZ…", uploadFile, {
  className: "span-2",
  hint: "CSV: a header row, numeric features and a target column. NPZ: arrays x and y.",
});
const uploadTarget = el("input", {
  type: "text", id: "upload-target", maxlength: "200", autocomplete: "off", placeholder: "the last column",
});
const uploadTargetField = field("Target column", uploadTarget, { hint: "CSV only: the column to predict" });
const uploadTask = selectInput("", [["", "inferred"], ["classification"], ["regression"]]);
uploadTask.id = "upload-task";
const uploadTaskField = field("Task", uploadTask, { hint: "Inferred: labels → classification" });
const uploadButton = el("button", { type: "button", class: "secondary", id: "upload-button" }, "Upload");
uploadFields.append(
  uploadFileField, uploadTargetField, uploadTaskField, el("div", { class: "upload-actions" }, uploadButton),
);

function setFieldError(wrapper, message) {
  wrapper.classList.add("invalid");
  wrapper.querySelector(".field-error").textContent = message;
  wrapper.querySelector("input, select, textarea")?.setAttribute("aria-invalid", "true");
}

// Which upload control a 422 item of POST /api/datasets belongs beside.
function uploadFieldFor(loc) {
  if (loc?.[0] === "query" && loc[1] === "target") return uploadTargetField;
  if (loc?.[0] === "query" && loc[1] === "task") return uploadTaskField;
  return uploadFileField;
}

async function uploadDataset() {
  for (const wrapper of [uploadFileField, uploadTargetField, uploadTaskField]) clearField(wrapper);
  uploadStatus.textContent = "";
  const file = uploadFile.files[0];
  if (!file) {
    setFieldError(uploadFileField, "Choose a CSV or NPZ file first.");
    uploadFile.focus();
    return;
  }
  const params = new URLSearchParams({ name: file.name.slice(0, 200) || "upload" });
  const format = /\.(csv|npz)$/i.exec(file.name)?.[1].toLowerCase();
  if (format) params.set("format", format);
  const target = uploadTarget.value.trim();
  if (target && format !== "npz") params.set("target", target);
  if (uploadTask.value) params.set("task", uploadTask.value);
  const contentType = format === "csv" ? "text/csv" : "application/octet-stream";
  uploadButton.disabled = true;
  uploadStatus.textContent = `Uploading ${file.name}…`;
  let response;
  let payload;
  try {
    response = await fetch(`/api/datasets?${params}`, {
      method: "POST", body: file, headers: { "Content-Type": contentType },
    });
    payload = await response.json().catch(() => null);
  } catch (error) {
    uploadStatus.textContent = "";
    setFieldError(uploadFileField, `Could not reach the server (${error.message}); nothing was uploaded.`);
    return;
  } finally {
    uploadButton.disabled = false;
  }
  if (response.status === 401) {
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    return;
  }
  if (response.status === 201 && payload) {
    addUpload(payload, { first: true });
    datasetSelect.value = `${UPLOAD_PREFIX}${payload.id}`;
    updateDataset();
    clearField(datasetField);
    uploadStatus.textContent = `Uploaded and selected: ${uploadLabel(payload)}.`;
    uploadFile.value = "";
    return;
  }
  uploadStatus.textContent = "";
  const detail = payload?.detail;
  if (response.status === 422 && Array.isArray(detail)) {
    for (const item of detail) {
      const wrapper = uploadFieldFor(item.loc);
      const previous = wrapper.querySelector(".field-error").textContent;
      const message = String(item.msg ?? "invalid").replace(/^Value error, /, "");
      setFieldError(wrapper, previous ? `${previous}; ${message}` : message);
    }
  } else if (response.status === 413) {
    setFieldError(uploadFileField, `Too large for the server: ${typeof detail === "string" ? detail : "over its limit"}.`);
  } else {
    const text = typeof detail === "string" ? detail : response.statusText;
    setFieldError(uploadFileField, `The server did not take the file: HTTP ${response.status} ${text}`);
  }
  (form.querySelector("#upload-panel [aria-invalid=\"true\"]") ?? uploadFile).focus();
}
uploadButton.addEventListener("click", uploadDataset);
// Enter in the target field uploads (it would otherwise queue the experiment).
uploadTarget.addEventListener("keydown", (event) => {
  if (event.key !== "Enter") return;
  event.preventDefault();
  uploadDataset();
});
uploadFile.addEventListener("change", () => {
  clearField(uploadFileField);
  uploadStatus.textContent = "";
});

// Regularizer plugins that live workers registered (GET /api/regularizers), by name →
// how many workers offer it; every kind select offers them after the built-in kinds.
const plugins = new Map();
const kindSelects = new Set();

function pluginLabel(name) {
  const workers = plugins.get(name);
  return workers === undefined ? `${name} (no live worker has it)` : name;
}

// The option of plugin `name` in a kind select, made if missing.
function pluginOption(select, name) {
  const value = `${PLUGIN_PREFIX}${name}`;
  let option = [...select.options].find((node) => node.value === value);
  if (!option) {
    let group = select.querySelector("optgroup.plugins");
    if (!group) {
      group = el("optgroup", { class: "plugins", label: "Plugins" });
      select.append(group);
    }
    option = el("option", { value });
    group.append(option);
  }
  option.textContent = pluginLabel(name);
  return option;
}

async function loadPlugins() {
  let offered;
  try {
    offered = await api("/api/regularizers");
  } catch {
    return; // the built-in kinds still work
  }
  for (const plugin of offered.plugins ?? []) plugins.set(plugin.name, plugin.workers);
  for (const select of kindSelects) {
    if (!select.isConnected) {
      kindSelects.delete(select);
      continue;
    }
    for (const name of plugins.keys()) pluginOption(select, name);
    for (const option of select.querySelectorAll("optgroup.plugins option")) {
      option.textContent = pluginLabel(option.value.slice(PLUGIN_PREFIX.length));
    }
  }
}

// "strength=0.01, mode=1" → {strength: 0.01, mode: 1}: {value} (undefined when blank) or {error}.
function parseParams(text) {
  const entries = text.split(/[,;\n]/).map((entry) => entry.trim()).filter(Boolean);
  if (entries.length === 0) return { value: undefined };
  if (entries.length > MAX_PARAMS) return { error: `At most ${MAX_PARAMS} parameters.` };
  const params = {};
  for (const entry of entries) {
    const match = /^([^=\s]+)\s*=\s*(\S+)$/.exec(entry);
    if (!match) return { error: `"${entry}" is not name=number.` };
    const [, name, raw] = match;
    if (!PARAM_NAME.test(name)) {
      return { error: `"${name}": lower-case letters, digits and _, starting with a letter or _ (40 at most).` };
    }
    if (name in params) return { error: `"${name}" is given twice.` };
    const number = Number(raw);
    if (!Number.isFinite(number)) return { error: `"${name}": "${raw}" is not a number.` };
    if (Math.abs(number) > PARAM_LIMIT) return { error: `"${name}": must be between -1e6 and 1e6.` };
    params[name] = number;
  }
  return { value: params };
}

function formatParams(params) {
  return Object.entries(params ?? {}).map(([name, value]) => `${name}=${value}`).join(", ");
}

// A regularizer: a kind select and the strength inputs that kind reads (a plugin: its
// parameters). `prefix` is the spec path, e.g. `training.global_regularizer`; in layer
// rows names are set by renumber().
function regularizerEditor(prefix, { label }) {
  const kind = selectInput(`${prefix}.kind`, [["none"], ["l1"], ["l2"], ["l1l2", "l1 + l2"], ["smoothness"]]);
  kind.dataset.key = "regularizer.kind";
  for (const name of plugins.keys()) pluginOption(kind, name);
  kindSelects.add(kind);
  const strengths = {};
  const fields = {};
  for (const key of ["l1", "l2", "smoothness"]) {
    const input = numberInput(`${prefix}.${key}`, RULES.strength);
    input.dataset.key = `regularizer.${key}`;
    input.placeholder = String(DEFAULT_STRENGTH);
    strengths[key] = input;
    const short = STRENGTH_LABELS[key];
    fields[key] = field(label ? `${short[0].toUpperCase()}${short.slice(1)} strength` : short, input);
  }
  const params = el("input", {
    type: "text", name: `${prefix}.params`, class: "params", autocomplete: "off", spellcheck: "false",
    placeholder: "strength=0.01, mode=1",
  });
  params.dataset.key = "regularizer.params";
  ruleOf.set(params, RULES.params);
  fields.params = field(label ? "Plugin parameters" : "params", params, {
    className: "params", hint: label ? "name=number, comma-separated; blank: the plugin's defaults" : undefined,
  });
  const none = el("span", { class: "muted none" }, "–");
  const editor = { kind, strengths, params, fields, none, onUpdate: null };
  const isPlugin = () => kind.value.startsWith(PLUGIN_PREFIX);
  function update() {
    const wanted = KIND_FIELDS[kind.value] ?? [];
    for (const key of Object.keys(strengths)) applies(strengths[key], wanted.includes(key));
    applies(params, isPlugin());
    none.hidden = wanted.length > 0 || isPlugin();
    editor.onUpdate?.();
  }
  kind.addEventListener("change", update);
  function fill(spec) {
    if (spec?.kind === "plugin") {
      pluginOption(kind, spec.plugin);
      setValue(kind, `${PLUGIN_PREFIX}${spec.plugin}`);
    } else {
      setValue(kind, spec?.kind ?? "none");
    }
    for (const key of Object.keys(strengths)) setValue(strengths[key], spec?.[key] ?? DEFAULT_STRENGTH);
    setValue(params, formatParams(spec?.params));
    update();
  }
  // Another editor's settings (a new layer row copies the last one).
  function copy(other) {
    if (other.isPlugin()) pluginOption(kind, other.kind.value.slice(PLUGIN_PREFIX.length));
    kind.value = other.kind.value;
    for (const [key, input] of Object.entries(other.strengths)) setValue(strengths[key], input.value);
    setValue(params, other.params.value);
    update();
  }
  function read(check) {
    if (kind.value === "none") return undefined;
    if (isPlugin()) {
      const spec = { kind: "plugin", plugin: kind.value.slice(PLUGIN_PREFIX.length) };
      spec.params = check(params);
      return spec;
    }
    const spec = { kind: kind.value };
    for (const key of KIND_FIELDS[kind.value]) spec[key] = check(strengths[key]);
    return spec;
  }
  return Object.assign(editor, { update, fill, copy, read, isPlugin });
}

// Training
const trainingFields = form.querySelector("#training-fields");
add(trainingFields, "Epochs", numberInput("training.epochs", RULES.epochs));
add(trainingFields, "Batch size", numberInput("training.batch_size", RULES.batch_size));
add(trainingFields, "Optimizer", selectInput("training.optimizer", OPTIMIZERS.map((name) => [name])));
add(trainingFields, "Learning rate", numberInput("training.learning_rate", RULES.learning_rate));
add(trainingFields, "Seed", numberInput("training.seed", RULES.seed));
const loopSelect = selectInput("training.loop", [["fit"], ["custom"]]);
add(trainingFields, "Training loop", loopSelect, { hint: "custom: a GradientTape loop" });
add(trainingFields, "Weight decay", numberInput("training.weight_decay", RULES.weight_decay), {
  hint: "Decoupled, in the optimizer",
});
const shuffleInput = el("input", { type: "checkbox", name: "training.shuffle" });
add(trainingFields, null, shuffleInput, { className: "check" }).append(
  el("span", { class: "label" }, "Shuffle each epoch"),
);

const globalFields = form.querySelector("#global-fields");
const globalRegularizer = regularizerEditor("training.global_regularizer", { label: true });
for (const control of [globalRegularizer.kind, globalRegularizer.params, ...Object.values(globalRegularizer.strengths)]) {
  delete control.dataset.key;
}
const globalKindField = field("Penalty on all weights", globalRegularizer.kind, {
  className: "span-2",
  hint: "Custom loop only: one penalty on every trainable weight, biases included",
});
globalFields.append(globalKindField, ...Object.values(globalRegularizer.fields));

function updateLoop() {
  const custom = loopSelect.value === "custom";
  globalFields.hidden = !custom;
  globalRegularizer.kind.disabled = !custom;
}
loopSelect.addEventListener("change", updateLoop);

// Schedule, early stopping, histograms (ScheduleSpec, EarlyStoppingSpec, histogram_every).
const extrasFields = form.querySelector("#extras-fields");
const scheduleSelect = selectInput("training.schedule.kind", [
  ["constant"], ["warmup", "warmup: 0 → 1"], ["cosine", "cosine: 1 → final fraction"],
]);
add(extrasFields, "Penalty schedule", scheduleSelect, { hint: "How every λ changes over the epochs" });
add(extrasFields, "Warmup epochs", numberInput("training.schedule.warmup_epochs", RULES.warmup_epochs), {
  hint: "λ rises from 0 over these epochs",
});
add(extrasFields, "Final fraction", numberInput("training.schedule.final_fraction", RULES.final_fraction), {
  hint: "Share of λ left at the last epoch",
});
add(extrasFields, "Histograms every", numberInput("training.histogram_every", RULES.histogram_every), {
  hint: "Epochs between weight histograms; 0: off",
});
const earlyStoppingInput = el("input", { type: "checkbox", name: "training.early_stopping" });
add(extrasFields, null, earlyStoppingInput, { className: "check" }).append(
  el("span", { class: "label" }, "Stop early"),
);
add(extrasFields, "Patience", numberInput("training.early_stopping.patience", RULES.patience), {
  hint: "Epochs without a better val_data_loss",
});
add(extrasFields, "Min improvement", numberInput("training.early_stopping.min_delta", RULES.min_delta), {
  hint: "What counts as better",
});
const restoreBestInput = el("input", { type: "checkbox", name: "training.early_stopping.restore_best_weights" });
add(extrasFields, null, restoreBestInput, { className: "check" }).append(
  el("span", { class: "label" }, "Restore the best weights"),
);

function updateExtras() {
  applies(controls["training.schedule.warmup_epochs"], scheduleSelect.value === "warmup");
  applies(controls["training.schedule.final_fraction"], scheduleSelect.value === "cosine");
  for (const name of ["patience", "min_delta", "restore_best_weights"]) {
    applies(controls[`training.early_stopping.${name}`], earlyStoppingInput.checked);
  }
}
scheduleSelect.addEventListener("change", updateExtras);
earlyStoppingInput.addEventListener("change", updateExtras);

// --- layer rows --------------------------------------------------------------------------

function describeRegularizer(spec) {
  if (spec.kind === "plugin") return `${spec.plugin}(${formatParams(spec.params)})`;
  if (spec.kind === "l1l2") return `L1 ${spec.l1} + L2 ${spec.l2}`;
  if (spec.kind === "smoothness") return `smoothness ${spec.smoothness}`;
  return `${spec.kind.toUpperCase()} ${spec[spec.kind]}`;
}

function keyed(key, control) {
  control.dataset.key = key;
  return control;
}

function createLayerRow() {
  const c = {
    type: keyed("type", selectInput("", LAYER_TYPES.map((type) => [type]))),
    units: keyed("units", numberInput("", RULES.units)),
    filters: keyed("filters", numberInput("", RULES.filters)),
    kernel_size: keyed("kernel_size", numberInput("", RULES.kernel_size)),
    pool_size: keyed("pool_size", numberInput("", RULES.pool_size)),
    activation: keyed("activation", selectInput("", ACTIVATIONS.map((name) => [name]))),
    dropout: keyed("dropout", numberInput("", RULES.dropout)),
  };
  c.kernel_size.placeholder = "3";
  c.pool_size.placeholder = "none";
  const regularizer = regularizerEditor("", { label: false });
  const sizeFields = {
    units: field("units", c.units),
    filters: field("filters", c.filters),
    kernel_size: field("kernel", c.kernel_size),
    pool_size: field("pool", c.pool_size),
  };
  const remove = el("button", { type: "button", class: "small danger remove" }, "Remove");
  const rowError = el("span", { class: "row-error-text", "aria-live": "polite" });
  const note = el("span", { class: "row-note-text" });
  const dropExtras = el("button", { type: "button", class: "small secondary" }, "Drop them");
  const group = el(
    "tbody",
    { class: "layer-group" },
    el(
      "tr",
      { class: "layer" },
      el("td", { class: "index plain" }),
      el("td", { class: "plain" }, field(null, c.type)),
      el("td", {}, el("div", { class: "cell-fields" }, Object.values(sizeFields))),
      el("td", { class: "plain" }, field(null, c.activation)),
      el("td", { class: "plain" }, field(null, regularizer.kind)),
      el("td", {}, el("div", { class: "cell-fields" }, Object.values(regularizer.fields), regularizer.none)),
      el("td", { class: "plain" }, field(null, c.dropout)),
      el("td", { class: "actions plain" }, remove),
    ),
    el("tr", { class: "row-note", hidden: true }, el("td"), el("td", { colSpan: 7 }, note, " ", dropExtras)),
    el("tr", { class: "row-error", hidden: true }, el("td"), el("td", { colSpan: 7 }, rowError)),
  );
  const row = { group, controls: c, regularizer, rowError, note, extras: {} };
  layerRows.set(group, row);

  // A cell with two or more inputs labels them; then the whole row shows its small labels
  // so that its inputs line up.
  function updateLabels() {
    const labelled = c.type.value !== "dense" || regularizer.kind.value === "l1l2" || regularizer.isPlugin();
    group.querySelector("tr.layer").classList.toggle("labelled", labelled);
    for (const label of group.querySelectorAll("tr.layer .label")) label.hidden = !labelled;
  }
  regularizer.onUpdate = updateLabels;
  function updateType() {
    const dense = c.type.value === "dense";
    applies(c.units, dense);
    for (const key of ["filters", "kernel_size", "pool_size"]) applies(c[key], !dense);
    updateLabels();
  }
  row.updateType = updateType;
  c.type.addEventListener("change", updateType);
  remove.addEventListener("click", () => {
    group.remove();
    renumber();
  });
  dropExtras.addEventListener("click", () => setExtras(row, {}));
  return row;
}

// Settings the table has no column for (bias and activity regularizers of a cloned run)
// are kept and sent as they were, and said so under the row.
function setExtras(row, extras) {
  row.extras = extras;
  const parts = [];
  if (extras.bias_regularizer) parts.push(`bias ${describeRegularizer(extras.bias_regularizer)}`);
  if (extras.activity_regularizer) parts.push(`activity ${describeRegularizer(extras.activity_regularizer)}`);
  row.note.textContent = `Also kept from the cloned run: ${parts.join(", ")}.`;
  row.note.closest("tr").hidden = parts.length === 0;
}

function fillLayerRow(row, layer) {
  const c = row.controls;
  setValue(c.type, layer.type ?? "dense");
  setValue(c.units, layer.units ?? 32);
  setValue(c.filters, layer.filters ?? 16);
  setValue(c.kernel_size, layer.kernel_size ?? 3);
  setValue(c.pool_size, layer.pool_size);
  setValue(c.activation, layer.activation ?? "relu");
  setValue(c.dropout, layer.dropout ?? 0);
  row.regularizer.fill(layer.regularizer);
  const extras = {};
  for (const key of ["bias_regularizer", "activity_regularizer"]) if (layer[key]) extras[key] = layer[key];
  setExtras(row, extras);
  row.updateType();
}

function layerGroups() {
  return [...layersTable.tBodies];
}

function appendLayer(layer) {
  const row = createLayerRow();
  fillLayerRow(row, layer);
  layersTable.append(row.group);
  return row;
}

// Names follow the row's position: removing row 1 makes row 2 `model.layers.1.*`.
function renumber() {
  const groups = layerGroups();
  groups.forEach((group, index) => {
    const row = layerRows.get(group);
    group.querySelector(".index").textContent = String(index + 1);
    for (const control of group.querySelectorAll("[data-key]")) {
      control.name = `model.layers.${index}.${control.dataset.key}`;
      const what = control.dataset.key.replace("regularizer.", "regularizer ");
      control.setAttribute("aria-label", `Layer ${index + 1} ${what}`);
    }
    row.rowError.dataset.errorFor = `model.layers.${index}`;
    const remove = group.querySelector("button.remove");
    remove.disabled = groups.length === 1;
    remove.setAttribute("aria-label", `Remove layer ${index + 1}`);
  });
  addLayerButton.disabled = groups.length >= MAX_LAYERS;
  refreshAxisPaths();
}

addLayerButton.addEventListener("click", () => {
  const groups = layerGroups();
  const last = layerRows.get(groups[groups.length - 1]);
  const row = createLayerRow();
  // A new row copies the last one's settings (not its cloned-run extras).
  for (const [key, control] of Object.entries(last.controls)) setValue(row.controls[key], control.value);
  row.regularizer.copy(last.regularizer);
  row.updateType();
  layersTable.append(row.group);
  renumber();
  row.controls.type.focus();
});

// --- sweep and seed repeats --------------------------------------------------------------

// The settings an axis can vary: every layer at once, the training knobs, then each layer.
const COMMON_AXES = [
  ["model.layers[*].regularizer.l2", "L2 of every layer"],
  ["model.layers[*].regularizer.l1", "L1 of every layer"],
  ["model.layers[*].dropout", "Dropout of every layer"],
  ["training.learning_rate", "Learning rate"],
  ["training.weight_decay", "Weight decay"],
];
const LAYER_AXES = [
  ["regularizer.l2", "L2"],
  ["regularizer.l1", "L1"],
  ["dropout", "dropout"],
];
const MAX_AXIS_VALUES = 100;
const MAX_AXES = 6;
const AXIS_HINT =
  "A list: 0, 1e-4, 1e-3 · or a range: 1e-5 … 1e-1, 5 log (5 points, log-spaced; " +
  "linear if not said; ... for …). Random mode needs no count.";

const sweepSection = form.querySelector("#sweep-section");
const sweepSummary = form.querySelector("#sweep-summary");
const sweepAxes = form.querySelector("#sweep-axes");
const sweepCount = form.querySelector("#sweep-count");
const addAxisButton = form.querySelector("#add-axis");
const sweepFields = form.querySelector("#sweep-fields");
const axisRows = []; // {row, path, values, count, remove, rowError}

const modeSelect = selectInput("mode", [["grid"], ["random"]]);
add(sweepFields, "Mode", modeSelect, { hint: "grid: every combination · random: draws" });
add(sweepFields, "Draws", numberInput("draws", RULES.draws), { hint: "Random combinations to run" });
add(sweepFields, "Repeat with k seeds", numberInput("seeds", RULES.seeds), {
  hint: "Each combination runs k times, seeds seed, seed+1, …",
});
const pruneInput = el("input", { type: "checkbox", name: "prune" });
add(sweepFields, null, pruneInput, { className: "check" }).append(
  el("span", { class: "label" }, "Prune lagging runs"),
);

function axisPathOptions() {
  const options = [...COMMON_AXES];
  layerGroups().forEach((_, index) => {
    for (const [key, label] of LAYER_AXES) {
      options.push([`model.layers[${index}].${key}`, `Layer ${index + 1} ${label}`]);
    }
  });
  return options;
}

// The per-layer choices follow the layer rows; a choice that is gone falls back to the first.
function refreshAxisPaths() {
  const options = axisPathOptions();
  for (const axis of axisRows) {
    const chosen = axis.path.value;
    axis.path.replaceChildren(...options.map(([value, label]) => el("option", { value }, label)));
    if (options.some(([value]) => value === chosen)) axis.path.value = chosen;
  }
}

// A sweep axis's values field: {value: {values} | {low, high, count, scale}} or {error}.
function parseAxisValues(text) {
  const raw = text.trim();
  if (raw === "") return { error: "Enter values: a list or a range." };
  const range = /^(\S+?)\s*(?:…|\.\.\.?)\s*(\S+?)(?:\s*[,;]\s*|\s+|$)(.*)$/.exec(raw);
  if (range) {
    const [, lowText, highText, rest] = range;
    const low = Number(lowText);
    const high = Number(highText.replace(/,$/, ""));
    if (!Number.isFinite(low) || !Number.isFinite(high) || lowText === "" || highText === "") {
      return { error: `"${raw}": a range is LOW … HIGH, N [log|linear].` };
    }
    if (!(low < high)) return { error: "A range's LOW must be below its HIGH." };
    let count;
    let scale = "linear";
    for (const word of rest.split(/[\s,;]+/).filter(Boolean)) {
      if (/^(log|linear|lin)$/i.test(word)) scale = /^log$/i.test(word) ? "log" : "linear";
      else if (/^\d+$/.test(word) && count === undefined) count = Number(word);
      else return { error: `"${word}": after the range, a count and log or linear.` };
    }
    if (scale === "log" && low <= 0) return { error: "A log range needs LOW above 0." };
    if (count !== undefined && (count < 2 || count > MAX_AXIS_VALUES)) {
      return { error: `A range has 2 to ${MAX_AXIS_VALUES} values.` };
    }
    return { value: { low, high, count, scale } };
  }
  const words = raw.split(/[\s,;]+/).filter(Boolean);
  if (words.length > MAX_AXIS_VALUES) return { error: `At most ${MAX_AXIS_VALUES} values.` };
  const values = [];
  for (const word of words) {
    const number = Number(word);
    if (word === "" || !Number.isFinite(number)) return { error: `"${word}" is not a number.` };
    values.push(number);
  }
  return { value: { values } };
}

// An axis as POST /api/sweeps takes it (a range in grid mode with its count of points).
function axisSpec(path, parsed, mode) {
  if (parsed.values) return { path, values: parsed.values };
  const axis = { path, low: parsed.low, high: parsed.high, scale: parsed.scale };
  if (mode === "grid") axis.count = parsed.count;
  return axis;
}

// The points of a grid range, spaced as app/sweeps.py spaces them; shown under the row.
function spacedValues({ low, high, count, scale }) {
  const values = [];
  for (let index = 0; index < count; index += 1) {
    const t = index / (count - 1);
    values.push(scale === "log" ? Math.exp(Math.log(low) + t * (Math.log(high) - Math.log(low))) : low + t * (high - low));
  }
  return values.map((value) => Number(value.toPrecision(4)));
}

function createAxisRow() {
  const path = el("select", {});
  const values = el("input", {
    type: "text", class: "values", autocomplete: "off", spellcheck: "false", placeholder: "0, 1e-4, 1e-3, 1e-2, 1e-1",
  });
  ruleOf.set(values, RULES.axisValues);
  const index = el("span", { class: "axis-index" });
  const count = el("span", { class: "axis-count", "aria-live": "polite" });
  const preview = el("div", { class: "axis-preview muted" });
  const remove = el("button", { type: "button", class: "small danger" }, "Remove");
  const rowError = el("div", { class: "section-error axis-error", "aria-live": "polite" });
  const row = el(
    "div",
    { class: "sweep-axis" },
    index,
    field("Setting", path),
    field("Values", values, { hint: AXIS_HINT }),
    count,
    el("div", { class: "axis-actions" }, remove),
    preview,
    rowError,
  );
  const axis = { row, path, values, index, count, preview, remove, rowError };
  remove.addEventListener("click", () => {
    axisRows.splice(axisRows.indexOf(axis), 1);
    row.remove();
    renumberAxes();
    updateSweep();
    (axisRows[axisRows.length - 1]?.values ?? addAxisButton).focus();
  });
  return axis;
}

function renumberAxes() {
  axisRows.forEach((axis, index) => {
    axis.index.textContent = String(index + 1);
    axis.path.name = `axes.${index}.path`;
    axis.values.name = `axes.${index}.values`;
    axis.path.setAttribute("aria-label", `Axis ${index + 1} setting`);
    axis.values.setAttribute("aria-label", `Axis ${index + 1} values`);
    axis.remove.setAttribute("aria-label", `Remove axis ${index + 1}`);
    axis.rowError.dataset.errorFor = `axes.${index}`;
  });
  addAxisButton.disabled = axisRows.length >= MAX_AXES;
}

function addAxis({ path, values } = {}) {
  const axis = createAxisRow();
  axisRows.push(axis);
  sweepAxes.append(axis.row);
  refreshAxisPaths();
  if (path) axis.path.value = path;
  if (values) axis.values.value = values;
  renumberAxes();
  return axis;
}

addAxisButton.addEventListener("click", () => {
  const used = new Set(axisRows.map((axis) => axis.path.value));
  const free = axisPathOptions().find(([value]) => !used.has(value));
  const axis = addAxis({ path: free?.[0] });
  updateSweep();
  axis.path.focus();
});

// What the sweep section asks for: {sweep} (null when it is off: no axis and one seed),
// its run count, and the errors found, by field name.
function readSweep() {
  const errors = {};
  const read = (control) => {
    const { value, error } = check(control);
    if (error) errors[control.name] = error;
    return value;
  };
  const seeds = read(controls.seeds);
  const mode = modeSelect.value;
  const axes = [];
  let combinations = 1;
  let complete = true;
  for (const axis of axisRows) {
    axis.count.textContent = "";
    axis.preview.textContent = "";
    const parsed = read(axis.values);
    if (parsed === undefined) {
      complete = false;
      continue;
    }
    if (parsed.values === undefined && mode === "grid" && parsed.count === undefined) {
      errors[axis.values.name] = "Say how many points the grid takes from this range: LOW … HIGH, N.";
      complete = false;
      continue;
    }
    const spec = axisSpec(axis.path.value, parsed, mode);
    axes.push(spec);
    const points = spec.values?.length ?? spec.count;
    if (points !== undefined) {
      combinations *= points;
      axis.count.textContent = plural(points, "value");
    } else {
      axis.count.textContent = `${spec.scale} draws`;
    }
    if (spec.count !== undefined) axis.preview.textContent = `→ ${spacedValues(spec).join(", ")}`;
  }
  const on = axisRows.length > 0 || (seeds ?? 1) > 1;
  const sweep = { axes, mode, seeds, prune: pruneInput.checked };
  if (mode === "random") sweep.draws = read(controls.draws);
  let runs = null;
  if (complete && seeds !== undefined) {
    if (mode === "random") runs = sweep.draws === undefined ? null : sweep.draws * seeds;
    else runs = combinations * seeds;
  }
  return { sweep: on ? sweep : null, runs, errors };
}

function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// The live count under the section, in its summary line and on the submit button.
function updateSweep() {
  applies(controls.draws, modeSelect.value === "random");
  const { sweep, runs } = readSweep();
  let text;
  let how = "";
  if (!sweep) {
    text = "No sweep: queues 1 run.";
  } else if (runs === null) {
    text = "Fill in every axis, the seeds and the draws to see how many runs this queues.";
  } else {
    text = `Queues ${plural(runs, "run")}`;
    const seedsPart = plural(sweep.seeds, "seed");
    if (sweep.mode === "random") how = `${plural(sweep.draws, "draw")} × ${seedsPart}`;
    else if (sweep.axes.length) {
      how = `${sweep.axes.map((axis) => axis.values?.length ?? axis.count).join(" × ")} values × ${seedsPart}`;
    }
    else how = seedsPart;
  }
  sweepCount.replaceChildren(text, ...(how ? [el("span", { class: "muted" }, ` (${how})`)] : []));
  sweepSummary.textContent = sweep ? `— ${runs === null ? "incomplete" : `queues ${plural(runs, "run")}`}` : "";
  if (!sending) setSending(false);
}
sweepSection.addEventListener("input", updateSweep);
sweepSection.addEventListener("change", updateSweep);

function fillSweep() {
  for (const axis of axisRows.splice(0)) axis.row.remove();
  setValue(modeSelect, "grid");
  setValue(controls.draws, 10);
  setValue(controls.seeds, 1);
  setValue(pruneInput, false);
  renumberAxes();
}

// --- reading and checking --------------------------------------------------------------

function rangeMessage(rule) {
  const low = rule.minExclusive ? `above ${rule.min}` : `at least ${rule.min}`;
  const high = rule.maxExclusive ? `below ${rule.max}` : `at most ${rule.max}`;
  return `Must be ${low} and ${high}.`;
}

// One control's value by its rule: {value} (undefined when blank and optional) or {error}.
function check(control) {
  const rule = ruleOf.get(control);
  const raw = control.value;
  if (rule.params) return parseParams(raw);
  if (rule.axis) return parseAxisValues(raw);
  if (rule.text) {
    const text = rule === RULES.name ? raw.trim() : raw;
    if (rule.required && text === "") return { error: "Required." };
    if (text.length > rule.maxLength) return { error: `At most ${rule.maxLength} characters.` };
    if (text.includes("\u0000")) return { error: "Must not contain a NUL character." };
    return { value: text === "" ? undefined : text };
  }
  if (control.validity.badInput) return { error: "Enter a number." };
  if (raw.trim() === "") return rule.optional ? { value: undefined } : { error: "Required." };
  const number = Number(raw);
  if (!Number.isFinite(number)) return { error: "Enter a number." };
  if (rule.integer && !Number.isInteger(number)) return { error: "Enter a whole number." };
  const tooLow = number < rule.min || (rule.minExclusive && number === rule.min);
  const tooHigh = number > rule.max || (rule.maxExclusive && number === rule.max);
  if (tooLow || tooHigh) return { error: rangeMessage(rule) };
  return { value: number };
}

// The spec the form describes, with unset optional fields left out, and the errors found.
function readForm() {
  const errors = {};
  const read = (control) => {
    const { value, error } = check(control);
    if (error) errors[control.name] = error;
    return value;
  };
  const uploadId = selectedUploadId();
  const dataset = uploadId === null ? { name: datasetSelect.value } : { name: "upload", upload: { id: uploadId } };
  for (const key of DATASET_FIELDS) {
    const control = controls[`dataset.${key}`];
    if (!control.disabled) dataset[key] = read(control);
  }
  const layers = layerGroups().map((group) => {
    const { controls: c, regularizer, extras } = layerRows.get(group);
    const layer = { type: c.type.value };
    for (const key of ["units", "filters", "kernel_size", "pool_size"]) {
      if (!c[key].disabled) layer[key] = read(c[key]);
    }
    layer.activation = c.activation.value;
    layer.regularizer = regularizer.read(read);
    Object.assign(layer, extras);
    layer.dropout = read(c.dropout);
    return layer;
  });
  const training = {};
  for (const key of ["epochs", "batch_size", "learning_rate", "seed", "weight_decay"]) {
    training[key] = read(controls[`training.${key}`]);
  }
  training.optimizer = controls["training.optimizer"].value;
  training.loop = loopSelect.value;
  training.shuffle = shuffleInput.checked;
  if (training.loop === "custom") training.global_regularizer = globalRegularizer.read(read);
  const scheduleKind = scheduleSelect.value;
  if (scheduleKind === "warmup") {
    training.schedule = { kind: scheduleKind, warmup_epochs: read(controls["training.schedule.warmup_epochs"]) };
  } else if (scheduleKind === "cosine") {
    training.schedule = { kind: scheduleKind, final_fraction: read(controls["training.schedule.final_fraction"]) };
  }
  if (earlyStoppingInput.checked) {
    training.early_stopping = {
      patience: read(controls["training.early_stopping.patience"]),
      min_delta: read(controls["training.early_stopping.min_delta"]),
      restore_best_weights: restoreBestInput.checked,
    };
  }
  training.histogram_every = read(controls["training.histogram_every"]);
  const spec = { name: read(nameInput), notes: read(notesInput), dataset, model: { layers }, training };
  return { spec: JSON.parse(JSON.stringify(spec)), errors }; // drops the undefined keys
}

function fill(spec) {
  clearErrors();
  setValue(nameInput, spec.name);
  setValue(notesInput, spec.notes);
  const dataset = { ...DATASET_DEFAULTS, ...spec.dataset };
  if (dataset.upload) setValue(datasetSelect, uploadOption(dataset.upload.id).value);
  else setValue(datasetSelect, dataset.name);
  for (const key of DATASET_FIELDS) {
    setValue(controls[`dataset.${key}`], dataset[key]);
  }
  updateDataset();
  for (const group of layerGroups()) group.remove();
  for (const layer of spec.model?.layers ?? [{}]) appendLayer(layer);
  renumber();
  const training = { ...TRAINING_DEFAULTS, ...spec.training };
  for (const key of ["epochs", "batch_size", "optimizer", "learning_rate", "seed", "loop", "weight_decay"]) {
    setValue(controls[`training.${key}`], training[key]);
  }
  setValue(shuffleInput, training.shuffle);
  globalRegularizer.fill(training.global_regularizer);
  updateLoop();
  const schedule = { ...SCHEDULE_DEFAULTS, ...training.schedule };
  setValue(scheduleSelect, schedule.kind);
  setValue(controls["training.schedule.warmup_epochs"], schedule.warmup_epochs);
  setValue(controls["training.schedule.final_fraction"], schedule.final_fraction);
  setValue(controls["training.histogram_every"], training.histogram_every);
  const early = { ...EARLY_STOPPING_DEFAULTS, ...training.early_stopping };
  setValue(earlyStoppingInput, Boolean(training.early_stopping));
  setValue(controls["training.early_stopping.patience"], early.patience);
  setValue(controls["training.early_stopping.min_delta"], early.min_delta);
  setValue(restoreBestInput, early.restore_best_weights);
  updateExtras();
}

// --- errors ------------------------------------------------------------------------------

function clearErrors() {
  formError.hidden = true;
  formError.replaceChildren();
  for (const wrapper of form.querySelectorAll(".field.invalid")) clearField(wrapper);
  for (const slot of form.querySelectorAll("[data-error-for]")) {
    slot.textContent = "";
    const row = slot.closest("tr.row-error");
    if (row) row.hidden = true;
  }
}

function clearField(wrapper) {
  wrapper.classList.remove("invalid");
  wrapper.querySelector(".field-error").textContent = "";
  wrapper.querySelector("input, select, textarea")?.removeAttribute("aria-invalid");
}

// Paths whose input has another name: an upload's fields are the dataset select's choice.
const PATH_ALIASES = { "dataset.upload": "dataset.name" };

// The input a path names, or the closest one above it (`….params.strength` → `….params`).
function inputFor(path) {
  if (!path) return null;
  const parts = path.split(".");
  while (parts.length) {
    const name = parts.join(".");
    for (const candidate of [PATH_ALIASES[name] ?? name, `${name}.kind`]) {
      const control = form.querySelector(`[name="${CSS.escape(candidate)}"]`);
      if (control && !control.disabled) return control;
    }
    parts.pop();
  }
  return null;
}

// The closest section or row slot for a path with no input: `model.layers.0` → its row.
function slotFor(path) {
  const parts = path.split(".");
  while (parts.length && parts[0] !== "") {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(parts.join("."))}"]`);
    if (slot) return slot;
    parts.pop();
  }
  return null;
}

function describePath(path) {
  const layer = /^model\.layers\.(\d+)(?:\.(.+))?$/.exec(path);
  if (layer) return `Layer ${Number(layer[1]) + 1}${layer[2] ? ` ${layer[2]}` : ""}`;
  const axis = /^axes\.(\d+)(?:\.(.+))?$/.exec(path);
  if (axis) return `Sweep axis ${Number(axis[1]) + 1}${axis[2] ? ` ${axis[2]}` : ""}`;
  return path;
}

// Errors by spec path (ours, or ApiError.fieldErrors()): beside their input where one has
// that name, else in the box at the top and beside their row or section.
function showErrors(errors, { fromServer, what = "experiment" }) {
  clearErrors();
  const unplaced = [];
  for (const [field, message] of Object.entries(errors)) {
    // Model-level messages name their layer up front: "model.layers.0: conv2d needs …".
    const prefixed = field === "" ? /^(model\.layers\.\d+): ([\s\S]*)$/.exec(message) : null;
    const path = prefixed ? prefixed[1] : field;
    const text = prefixed ? prefixed[2] : message;
    const control = inputFor(path);
    if (control) {
      const wrapper = control.closest(".field");
      wrapper.classList.add("invalid");
      wrapper.querySelector(".field-error").textContent = text;
      control.setAttribute("aria-invalid", "true");
      continue;
    }
    unplaced.push(path ? `${describePath(path)}: ${text}` : text);
    const slot = path ? slotFor(path) : null;
    if (slot) {
      slot.textContent = text;
      const row = slot.closest("tr.row-error");
      if (row) row.hidden = false;
    }
  }
  const placed = Object.keys(errors).length - unplaced.length;
  const lines = [...unplaced];
  if (placed === 1) lines.push("One field below needs a change.");
  else if (placed > 1) lines.push(`${placed} fields below need a change.`);
  const title = fromServer ? `The server did not accept this ${what}` : "Nothing was sent: check the form";
  showFormError(title, lines);
  const sweepErrors = sweepSection.querySelector('[aria-invalid="true"], .section-error:not(:empty)');
  if (sweepErrors) sweepSection.open = true;
  const first = form.querySelector('[aria-invalid="true"]'); // the first in page order
  if (first) first.focus();
  else formError.scrollIntoView({ block: "nearest" });
}

function showFormError(title, lines) {
  formError.replaceChildren(el("h2", {}, title), el("ul", {}, lines.map((line) => el("li", {}, line))));
  formError.hidden = false;
}

form.addEventListener("input", (event) => {
  const wrapper = event.target.closest(".field.invalid");
  if (wrapper) clearField(wrapper);
});

// --- sending -----------------------------------------------------------------------------

let sending = false;

function submitLabel() {
  const { sweep, runs } = readSweep();
  if (!sweep) return "Queue experiment";
  return runs === null ? "Queue sweep" : `Queue sweep: ${plural(runs, "run")}`;
}

function setSending(on, label = "Queueing…") {
  sending = on;
  submitButton.disabled = on;
  submitButton.textContent = on ? label : submitLabel();
}

// A sweep's 422 names the base spec as `base.…`: those land where the experiment's would.
function sweepFieldErrors(error) {
  const errors = {};
  for (const [field, message] of Object.entries(error.fieldErrors())) {
    const path = field === "base" ? "" : field.replace(/^base\./, "");
    errors[path] = errors[path] ? `${errors[path]}; ${message}` : message;
  }
  return errors;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (sending) return;
  const { spec, errors } = readForm();
  const { sweep, errors: sweepErrors } = readSweep();
  Object.assign(errors, sweepErrors);
  if (Object.keys(errors).length > 0) {
    showErrors(errors, { fromServer: false });
    return;
  }
  clearErrors();
  setSending(true);
  const what = sweep ? "sweep" : "experiment";
  let created;
  try {
    if (sweep) {
      const body = { name: spec.name, base: spec, ...sweep };
      created = await api("/api/sweeps", { method: "POST", body });
    } else {
      created = await api("/api/experiments", { method: "POST", body: spec });
    }
  } catch (error) {
    setSending(false);
    if (error instanceof ApiError && error.status === 422) {
      showErrors(sweep ? sweepFieldErrors(error) : error.fieldErrors(), { fromServer: true, what });
    } else if (error instanceof ApiError) {
      showFormError(`The server did not queue the ${what}`, [`HTTP ${error.status}: ${error.message}`]);
    } else {
      const where = sweep ? "the sweeps" : "the runs list";
      showFormError("Could not reach the server", [
        `${error.message}. The ${what} may not have been queued: check ${where} before trying again.`,
      ]);
    }
    formError.scrollIntoView({ block: "nearest" });
    return;
  }
  // Stay disabled while the browser leaves: no second submission.
  const page = sweep ? "sweeps" : "runs";
  window.location.assign(`/${page}/${encodeURIComponent(created.id)}`);
});

// --- start: the classic, a clone, or back to the classic ---------------------------------

const title = document.querySelector("#title");
const lead = document.querySelector("#lead");
const classicLead = lead.textContent;

function showClassic() {
  title.textContent = "New experiment";
  lead.textContent = classicLead;
  fill(CLASSIC);
  fillSweep();
  updateSweep();
}

let loading = 0; // bumped by the reset link, so that a clone arriving late is dropped

async function loadClone(id) {
  const mine = ++loading;
  setSending(true, "Loading…");
  submitNote.textContent = `Loading run #${id}…`;
  try {
    if (!/^\d+$/.test(id)) throw new Error("not a run id");
    const run = await api(`/api/experiments/${encodeURIComponent(id)}`);
    if (mine !== loading) return;
    const name = `${run.spec.name.slice(0, RULES.name.maxLength - 8)} (clone)`;
    fill({ ...run.spec, name });
    title.textContent = `Clone of run #${run.id}`;
    lead.replaceChildren(
      "Copied from ",
      el("a", { href: `/runs/${encodeURIComponent(run.id)}` }, run.name),
      ". Change one knob and queue it again.",
    );
  } catch (error) {
    if (mine !== loading) return;
    const reason = error instanceof ApiError && error.status === 404 ? "no such run" : error.message;
    showFormError(`Could not load run #${id} to clone`, [`${reason}. The form shows the classic instead.`]);
  } finally {
    if (mine === loading) {
      submitNote.textContent = "";
      setSending(false);
    }
  }
}

document.querySelector("#reset").addEventListener("click", (event) => {
  event.preventDefault();
  if (submitNote.textContent) {
    loading += 1; // a clone still loading
    submitNote.textContent = "";
    setSending(false);
  }
  history.replaceState(null, "", "/new");
  showClassic();
  nameInput.focus();
});

showClassic();
loadUploads();
loadPlugins();
const cloneId = new URLSearchParams(window.location.search).get("clone");
if (cloneId !== null) loadClone(cloneId);
