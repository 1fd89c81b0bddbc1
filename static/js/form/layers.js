// The layer rows: one `tbody.layer-group` per hidden layer (its inputs, a note for settings
// the table has no column for, and an error row), named by position (`model.layers.1.*`),
// showing the inputs of the layer's type. A new row copies the last one.
import { el } from "../api.js";
import { applies, field, numberInput, selectInput, setValue } from "./fields.js";
import { describeRegularizer, regularizerEditor } from "./regularizer.js";

// Sizes a new row starts from when the spec gives none (units and filters have no default).
const STARTING_SIZE = { units: 32, filters: 16 };
const SIZE_KEYS = ["units", "filters", "kernel_size", "pool_size"];
const EXTRA_KEYS = ["bias_regularizer", "activity_regularizer"];

function keyed(key, control) {
  control.dataset.key = key;
  return control;
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

// `onRenumber` is told when the rows change (the sweep offers a choice per layer).
export function layersSection(form, spec, { onRenumber }) {
  const { rules } = spec;
  const table = form.querySelector("table.layers");
  const addButton = form.querySelector("#add-layer");
  const rows = new WeakMap(); // tbody.layer-group → its row

  function createRow() {
    const c = {
      type: keyed("type", selectInput("", spec.layerTypes.map((type) => [type]))),
      units: keyed("units", numberInput("", rules.units)),
      filters: keyed("filters", numberInput("", rules.filters)),
      kernel_size: keyed("kernel_size", numberInput("", rules.kernel_size)),
      pool_size: keyed("pool_size", numberInput("", rules.pool_size)),
      activation: keyed("activation", selectInput("", spec.activations.map((name) => [name]))),
      dropout: keyed("dropout", numberInput("", rules.dropout)),
    };
    c.kernel_size.placeholder = String(spec.defaults.layer.kernel_size);
    c.pool_size.placeholder = "none";
    const regularizer = regularizerEditor(spec, "", { label: false });
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
    rows.set(group, row);

    // A cell with two or more inputs labels them; then the whole row shows its small labels
    // so that its inputs line up.
    function updateLabels() {
      const labelled = c.type.value !== "dense" || regularizer.kind.value === "l1l2" || regularizer.isPlugin();
      group.querySelector("tr.layer").classList.toggle("labelled", labelled);
      for (const label of group.querySelectorAll("tr.layer .label")) label.hidden = !labelled;
    }
    regularizer.onUpdate = updateLabels;
    row.updateType = () => {
      const dense = c.type.value === "dense";
      applies(c.units, dense);
      for (const key of ["filters", "kernel_size", "pool_size"]) applies(c[key], !dense);
      updateLabels();
    };
    c.type.addEventListener("change", row.updateType);
    remove.addEventListener("click", () => {
      group.remove();
      renumber();
    });
    dropExtras.addEventListener("click", () => setExtras(row, {}));
    return row;
  }

  function fillRow(row, layer) {
    const c = row.controls;
    const defaults = spec.defaults.layer;
    setValue(c.type, layer.type ?? spec.layerTypes[0]);
    setValue(c.units, layer.units ?? STARTING_SIZE.units);
    setValue(c.filters, layer.filters ?? STARTING_SIZE.filters);
    setValue(c.kernel_size, layer.kernel_size ?? defaults.kernel_size);
    setValue(c.pool_size, layer.pool_size);
    setValue(c.activation, layer.activation ?? defaults.activation);
    setValue(c.dropout, layer.dropout ?? defaults.dropout);
    row.regularizer.fill(layer.regularizer);
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
        const what = control.dataset.key.replace("regularizer.", "regularizer ");
        control.setAttribute("aria-label", `Layer ${index + 1} ${what}`);
      }
      row.rowError.dataset.errorFor = `model.layers.${index}`;
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
    for (const [key, control] of Object.entries(last.controls)) setValue(row.controls[key], control.value);
    row.regularizer.copy(last.regularizer);
    row.updateType();
    table.append(row.group);
    renumber();
    row.controls.type.focus();
  });

  // The layers of ModelSpec, each input through `read`.
  function read(readControl) {
    return groups().map((group) => {
      const { controls: c, regularizer, extras } = rows.get(group);
      const layer = { type: c.type.value };
      for (const key of SIZE_KEYS) {
        if (!c[key].disabled) layer[key] = readControl(c[key]);
      }
      layer.activation = c.activation.value;
      layer.regularizer = regularizer.read(readControl);
      Object.assign(layer, extras);
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
