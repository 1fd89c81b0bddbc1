// The layer rows: one `tbody.layer-group` per hidden layer (its inputs, a note for settings
// the table has no column for, and an error row), named by position (`model.layers.1.*`),
// showing the inputs of the layer's type with that type's bounds (form/rules.js reads both
// from the schema). A recurrent layer has a second row: its recurrent kernel's penalty, and
// a warning while its recurrent dropout is above 0. A new row copies the last one.
import { el } from "../api.js";
import { applies, field, numberInput, selectInput, setRule, setValue, valueOf } from "./fields.js";
import { describeRegularizer, regularizerEditor } from "./regularizer.js";
import { LAYER_FIELDS } from "./rules.js";

// Sizes a new row starts from when the spec gives none (units and filters have no default).
const STARTING_SIZE = { units: 32, filters: 16 };
// Penalties the table has no input for: kept from a cloned run and said so under the row.
const EXTRA_KEYS = ["bias_regularizer", "activity_regularizer"];
const EXTRA_WORDS = { bias_regularizer: "bias", activity_regularizer: "activity" };
const RECURRENT = "recurrent_regularizer";
// tensorflow #38236: Keras runs LSTM/GRU on cuDNN only without recurrent dropout.
const CUDNN_WARNING = "Recurrent dropout above 0 turns off the fast cuDNN kernel on a GPU "
  + "(Keras falls back to the generic loop, ~25x slower).";

function keyed(key, control) {
  control.dataset.key = key;
  return control;
}

// `onRenumber` is told when the rows change (the sweep offers a choice per layer).
export function layersSection(form, spec, { onRenumber }) {
  const table = form.querySelector("table.layers");
  const addButton = form.querySelector("#add-layer");
  const rows = new WeakMap(); // tbody.layer-group → its row
  const kinds = Object.values(spec.layers);
  // The size-cell inputs some layer type has, and the first type that has each.
  const sizeInputs = LAYER_FIELDS.filter(({ key }) => kinds.some((kind) => kind.fields.includes(key)));
  const ownerOf = (key) => kinds.find((kind) => kind.fields.includes(key));
  // What a row shows for `key` when neither the spec nor its type says: a starting size,
  // else the default of the first type that has the field.
  const fallback = (key) => STARTING_SIZE[key] ?? ownerOf(key).defaults[key];
  // Of a row's kept extras, those its type takes (the others are neither sent nor shown).
  const keptExtras = (row) => {
    const { properties } = spec.layers[row.controls.type.value];
    return EXTRA_KEYS.filter((key) => row.extras[key] && properties.includes(key));
  };

  // Settings the table has no input for (bias and activity penalties of a cloned run) are
  // kept and sent as they were, and said so under the row.
  function showExtras(row) {
    const parts = keptExtras(row).map((key) => `${EXTRA_WORDS[key]} ${describeRegularizer(row.extras[key])}`);
    row.note.textContent = `Also kept from the cloned run: ${parts.join(", ")}.`;
    row.note.closest("tr").hidden = parts.length === 0;
  }

  // Whether the row's type has a recurrent kernel (and so takes its penalty).
  const takesRecurrent = (row) => spec.layers[row.controls.type.value].properties.includes(RECURRENT);

  // The cuDNN warning, beside a recurrent dropout above 0.
  function showWarning(row) {
    const input = row.controls.recurrent_dropout;
    row.warning.hidden = !input || input.disabled || !(Number(input.value) > 0);
  }

  function setExtras(row, extras) {
    row.extras = extras;
    showExtras(row);
  }

  function createRow() {
    const c = { type: keyed("type", selectInput("", spec.layerTypes.map((type) => [type]))) };
    const sizeFields = {};
    for (const { key, label, check } of sizeInputs) {
      const control = check ? el("input", { type: "checkbox" }) : numberInput("", ownerOf(key).rules[key]);
      c[key] = keyed(key, control);
      sizeFields[key] = field(label, control);
    }
    c.activation = keyed("activation", selectInput("", spec.activations.map((name) => [name])));
    c.dropout = keyed("dropout", numberInput("", kinds[0].rules.dropout));
    if (c.kernel_size) c.kernel_size.placeholder = String(ownerOf("kernel_size").defaults.kernel_size);
    if (c.pool_size) c.pool_size.placeholder = "none";
    const regularizer = regularizerEditor(spec, "", { label: false });
    const recurrent = regularizerEditor(spec, "", { label: false, name: RECURRENT });
    const warning = el("span", { class: "recurrent-warning", role: "note", hidden: true }, CUDNN_WARNING);
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
      el(
        "tr",
        { class: "recurrent-row", hidden: true },
        el("td"),
        el("td", { colSpan: 3, class: "recurrent-label" }, el("span", { class: "label" }, "recurrent kernel penalty →"), warning),
        el("td", { class: "plain" }, field(null, recurrent.kind)),
        el("td", {}, el("div", { class: "cell-fields" }, Object.values(recurrent.fields), recurrent.none)),
        el("td", { colSpan: 2 }),
      ),
      el("tr", { class: "row-note", hidden: true }, el("td"), el("td", { colSpan: 7 }, note, " ", dropExtras)),
      el("tr", { class: "row-error", hidden: true }, el("td"), el("td", { colSpan: 7 }, rowError)),
    );
    const row = { group, controls: c, regularizer, recurrent, warning, rowError, note, extras: {} };
    rows.set(group, row);

    // A cell with two or more inputs labels them; then the whole row shows its small labels
    // so that its inputs line up.
    function updateLabels() {
      const several = spec.layers[c.type.value].fields.length > 1;
      const labelled = several || regularizer.kind.value === "l1l2" || regularizer.isPlugin();
      group.querySelector("tr.layer").classList.toggle("labelled", labelled);
      for (const label of group.querySelectorAll("tr.layer .label")) label.hidden = !labelled;
    }
    regularizer.onUpdate = updateLabels;
    // The type's own inputs, checked by the type's own bounds.
    row.updateType = () => {
      const kind = spec.layers[c.type.value];
      for (const { key, check } of sizeInputs) {
        const has = kind.fields.includes(key);
        applies(c[key], has);
        if (has && !check) setRule(c[key], kind.rules[key]);
      }
      setRule(c.dropout, kind.rules.dropout);
      group.querySelector("tr.recurrent-row").hidden = !takesRecurrent(row);
      showWarning(row);
      showExtras(row);
      updateLabels();
    };
    c.type.addEventListener("change", row.updateType);
    c.recurrent_dropout?.addEventListener("input", () => showWarning(row));
    remove.addEventListener("click", () => {
      group.remove();
      renumber();
    });
    dropExtras.addEventListener("click", () => setExtras(row, {}));
    return row;
  }

  function fillRow(row, layer) {
    const c = row.controls;
    const type = layer.type ?? spec.layerTypes[0];
    const defaults = spec.layers[type]?.defaults ?? {};
    setValue(c.type, type);
    for (const { key } of sizeInputs) {
      setValue(c[key], key in layer ? layer[key] : (defaults[key] ?? fallback(key)));
    }
    setValue(c.activation, layer.activation ?? defaults.activation);
    setValue(c.dropout, layer.dropout ?? defaults.dropout);
    row.regularizer.fill(layer.regularizer);
    row.recurrent.fill(layer[RECURRENT]);
    const extras = {};
    for (const key of EXTRA_KEYS) if (layer[key]) extras[key] = layer[key];
    setExtras(row, extras);
    row.updateType();
  }

  function groups() {
    return [...table.tBodies];
  }

  // Names follow the row's position: removing row 1 makes row 2 `model.layers.1.*`.
  function renumber() {
    const all = groups();
    all.forEach((group, index) => {
      const row = rows.get(group);
      group.querySelector(".index").textContent = String(index + 1);
      for (const control of group.querySelectorAll("[data-key]")) {
        control.name = `model.layers.${index}.${control.dataset.key}`;
        const what = control.dataset.key.replace("regularizer.", "regularizer ").replace("_", " ");
        control.setAttribute("aria-label", `Layer ${index + 1} ${what}`);
      }
      row.rowError.dataset.errorFor = `model.layers.${index}`;
      row.warning.id = `recurrent-warning-${index}`;
      row.controls.recurrent_dropout?.setAttribute("aria-describedby", row.warning.id);
      const remove = group.querySelector("button.remove");
      remove.disabled = all.length === 1;
      remove.setAttribute("aria-label", `Remove layer ${index + 1}`);
    });
    addButton.disabled = all.length >= spec.maxLayers;
    onRenumber();
  }

  addButton.addEventListener("click", () => {
    const all = groups();
    const last = rows.get(all[all.length - 1]);
    const row = createRow();
    // A new row copies the last one's settings (not its cloned-run extras).
    for (const [key, control] of Object.entries(last.controls)) setValue(row.controls[key], valueOf(control));
    row.regularizer.copy(last.regularizer);
    row.recurrent.copy(last.recurrent);
    row.updateType();
    table.append(row.group);
    renumber();
    row.controls.type.focus();
  });

  // The layers of ModelSpec, each input through `read`; a kept extra goes with the type
  // only if that type takes it.
  function read(readControl) {
    return groups().map((group) => {
      const row = rows.get(group);
      const { controls: c, regularizer, extras } = row;
      const layer = { type: c.type.value };
      for (const { key, check } of sizeInputs) {
        if (!c[key].disabled) layer[key] = check ? c[key].checked : readControl(c[key]);
      }
      layer.activation = c.activation.value;
      layer.regularizer = regularizer.read(readControl);
      if (takesRecurrent(row)) layer[RECURRENT] = row.recurrent.read(readControl);
      for (const key of keptExtras(row)) layer[key] = extras[key];
      layer.dropout = readControl(c.dropout);
      return layer;
    });
  }

  function fill(layers) {
    for (const group of groups()) group.remove();
    for (const layer of layers ?? [{}]) {
      const row = createRow();
      fillRow(row, layer);
      table.append(row.group);
    }
    renumber();
  }

  return { read, fill, count: () => groups().length };
}
