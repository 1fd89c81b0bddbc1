// The "New experiment" page: an ExperimentSpec as a form whose inputs are named by their
// spec path (`model.layers.0.units`), checked against the bounds of app/spec.py before
// sending, with the server's 422 shown beside the field it names. `?clone=ID` starts from
// an existing run. User text only ever goes in as text or input values, never as HTML.
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
};

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
  shuffle: true, weight_decay: 0,
};
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

function updateDataset() {
  const info = DATASETS[datasetSelect.value];
  const shape = info.task === "regression" ? "regression" : `${info.classes} classes`;
  datasetField.hintNode.textContent = `${info.description} · ${shape}, ${info.features} features`;
  for (const key of ["n_samples", "noise"]) applies(controls[`dataset.${key}`], Boolean(info.generated));
  if (info.generated) {
    controls["dataset.n_samples"].placeholder = `default ${info.samples}`;
    controls["dataset.noise"].placeholder = `default ${info.noise}`;
  }
}
datasetSelect.addEventListener("change", updateDataset);

// A regularizer: a kind select and the strength inputs that kind reads. `prefix` is the
// spec path, e.g. `training.global_regularizer`; in layer rows names are set by renumber().
function regularizerEditor(prefix, { label }) {
  const kind = selectInput(`${prefix}.kind`, [["none"], ["l1"], ["l2"], ["l1l2", "l1 + l2"], ["smoothness"]]);
  kind.dataset.key = "regularizer.kind";
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
  const none = el("span", { class: "muted none" }, "–");
  const editor = { kind, strengths, fields, none, onUpdate: null };
  function update() {
    const wanted = KIND_FIELDS[kind.value] ?? [];
    for (const key of Object.keys(strengths)) applies(strengths[key], wanted.includes(key));
    none.hidden = wanted.length > 0;
    editor.onUpdate?.();
  }
  kind.addEventListener("change", update);
  function fill(spec) {
    setValue(kind, spec?.kind ?? "none");
    for (const key of Object.keys(strengths)) setValue(strengths[key], spec?.[key] ?? DEFAULT_STRENGTH);
    update();
  }
  function read(check) {
    if (kind.value === "none") return undefined;
    const spec = { kind: kind.value };
    for (const key of KIND_FIELDS[kind.value]) spec[key] = check(strengths[key]);
    return spec;
  }
  return Object.assign(editor, { update, fill, read });
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
for (const control of [globalRegularizer.kind, ...Object.values(globalRegularizer.strengths)]) {
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

// --- layer rows --------------------------------------------------------------------------

function describeRegularizer(spec) {
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
    const labelled = c.type.value !== "dense" || regularizer.kind.value === "l1l2";
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
}

addLayerButton.addEventListener("click", () => {
  const groups = layerGroups();
  const last = layerRows.get(groups[groups.length - 1]);
  const row = createLayerRow();
  // A new row copies the last one's settings (not its cloned-run extras).
  for (const [key, control] of Object.entries(last.controls)) setValue(row.controls[key], control.value);
  row.regularizer.kind.value = last.regularizer.kind.value;
  for (const [key, input] of Object.entries(last.regularizer.strengths)) {
    setValue(row.regularizer.strengths[key], input.value);
  }
  row.regularizer.update();
  row.updateType();
  layersTable.append(row.group);
  renumber();
  row.controls.type.focus();
});

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
  const dataset = { name: datasetSelect.value };
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
  const spec = { name: read(nameInput), notes: read(notesInput), dataset, model: { layers }, training };
  return { spec: JSON.parse(JSON.stringify(spec)), errors }; // drops the undefined keys
}

function fill(spec) {
  clearErrors();
  setValue(nameInput, spec.name);
  setValue(notesInput, spec.notes);
  const dataset = { ...DATASET_DEFAULTS, ...spec.dataset };
  setValue(datasetSelect, dataset.name);
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

function inputFor(path) {
  if (!path) return null;
  for (const name of [path, `${path}.kind`]) {
    const control = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (control && !control.disabled) return control;
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
  return path;
}

// Errors by spec path (ours, or ApiError.fieldErrors()): beside their input where one has
// that name, else in the box at the top and beside their row or section.
function showErrors(errors, { fromServer }) {
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
  const title = fromServer ? "The server did not accept this experiment" : "Nothing was sent: check the form";
  showFormError(title, lines);
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
function setSending(on, label = "Queueing…") {
  sending = on;
  submitButton.disabled = on;
  submitButton.textContent = on ? label : "Queue experiment";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (sending) return;
  const { spec, errors } = readForm();
  if (Object.keys(errors).length > 0) {
    showErrors(errors, { fromServer: false });
    return;
  }
  clearErrors();
  setSending(true);
  let run;
  try {
    run = await api("/api/experiments", { method: "POST", body: spec });
  } catch (error) {
    setSending(false);
    if (error instanceof ApiError && error.status === 422) {
      showErrors(error.fieldErrors(), { fromServer: true });
    } else if (error instanceof ApiError) {
      showFormError("The server did not queue the experiment", [`HTTP ${error.status}: ${error.message}`]);
    } else {
      showFormError("Could not reach the server", [
        `${error.message}. The experiment may not have been queued: check the runs list before trying again.`,
      ]);
    }
    formError.scrollIntoView({ block: "nearest" });
    return;
  }
  // Stay disabled while the browser leaves: no second submission.
  window.location.assign(`/runs/${encodeURIComponent(run.id)}`);
});

// --- start: the classic, a clone, or back to the classic ---------------------------------

const title = document.querySelector("#title");
const lead = document.querySelector("#lead");
const classicLead = lead.textContent;

function showClassic() {
  title.textContent = "New experiment";
  lead.textContent = classicLead;
  fill(CLASSIC);
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
const cloneId = new URLSearchParams(window.location.search).get("clone");
if (cloneId !== null) loadClone(cloneId);
