// The sweep and seed repeats section: axes that each vary one setting (every layer at once,
// a training knob, or one layer), grid or random mode, k seeds per point, and the live count
// of runs it queues (POST /api/sweeps, SweepIn).
import { el } from "../api.js";
import { axisSpec, parseAxisValues, spacedValues } from "./axis-values.js";
import { applies, field, fieldAdder, numberInput, reader, ruleOf, selectInput, setValue } from "./fields.js";

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
const AXIS_HINT =
  "A list: 0, 1e-4, 1e-3 · or a range: 1e-5 … 1e-1, 5 log (5 points, log-spaced; " +
  "linear if not said; ... for …). Random mode needs no count.";
const STARTING_DRAWS = 10;

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

// `layerCount()` says how many layer rows there are; `onUpdate` is told when the count of
// runs may have changed.
export function sweepSection(form, spec, { layerCount, onUpdate }) {
  const section = form.querySelector("#sweep-section");
  const summary = form.querySelector("#sweep-summary");
  const axesList = form.querySelector("#sweep-axes");
  const countLine = form.querySelector("#sweep-count");
  const addButton = form.querySelector("#add-axis");
  const axisRule = { parse: (text) => parseAxisValues(text, spec) };
  const axes = []; // {row, path, values, index, count, preview, remove, rowError}
  const controls = {};
  const add = fieldAdder(form.querySelector("#sweep-fields"), controls);
  const mode = selectInput("mode", spec.sweepModes.map((name) => [name]));
  add("Mode", mode, { hint: "grid: every combination · random: draws" });
  add("Draws", numberInput("draws", spec.rules.draws), { hint: "Random combinations to run" });
  add("Repeat with k seeds", numberInput("seeds", spec.rules.seeds), {
    hint: "Each combination runs k times, seeds seed, seed+1, …",
  });
  const prune = el("input", { type: "checkbox", name: "prune" });
  add("Prune lagging runs", prune);

  function pathOptions() {
    const options = [...COMMON_AXES];
    for (let index = 0; index < layerCount(); index += 1) {
      for (const [key, label] of LAYER_AXES) {
        options.push([`model.layers[${index}].${key}`, `Layer ${index + 1} ${label}`]);
      }
    }
    return options;
  }

  // The per-layer choices follow the layer rows; a choice that is gone falls back to the first.
  function refreshPaths() {
    const options = pathOptions();
    for (const axis of axes) {
      const chosen = axis.path.value;
      axis.path.replaceChildren(...options.map(([value, label]) => el("option", { value }, label)));
      if (options.some(([value]) => value === chosen)) axis.path.value = chosen;
    }
  }

  function createAxisRow() {
    const path = el("select", {});
    const values = el("input", {
      type: "text", class: "values", autocomplete: "off", spellcheck: "false", placeholder: "0, 1e-4, 1e-3, 1e-2, 1e-1",
    });
    ruleOf.set(values, axisRule);
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
      axes.splice(axes.indexOf(axis), 1);
      row.remove();
      renumber();
      update();
      (axes[axes.length - 1]?.values ?? addButton).focus();
    });
    return axis;
  }

  function renumber() {
    axes.forEach((axis, index) => {
      axis.index.textContent = String(index + 1);
      axis.path.name = `axes.${index}.path`;
      axis.values.name = `axes.${index}.values`;
      axis.path.setAttribute("aria-label", `Axis ${index + 1} setting`);
      axis.values.setAttribute("aria-label", `Axis ${index + 1} values`);
      axis.remove.setAttribute("aria-label", `Remove axis ${index + 1}`);
      axis.rowError.dataset.errorFor = `axes.${index}`;
    });
    addButton.disabled = axes.length >= spec.maxAxes;
  }

  addButton.addEventListener("click", () => {
    const used = new Set(axes.map((axis) => axis.path.value));
    const free = pathOptions().find(([value]) => !used.has(value));
    const axis = createAxisRow();
    axes.push(axis);
    axesList.append(axis.row);
    refreshPaths();
    if (free) axis.path.value = free[0];
    renumber();
    update();
    axis.path.focus();
  });

  // What the section asks for: {sweep} (null when it is off: no axis and one seed), its
  // run count, and the errors found, by field name.
  function read() {
    const { read: readControl, errors } = reader();
    const seeds = readControl(controls.seeds);
    const chosenMode = mode.value;
    const specs = [];
    let combinations = 1;
    let complete = true;
    for (const axis of axes) {
      axis.count.textContent = "";
      axis.preview.textContent = "";
      const parsed = readControl(axis.values);
      if (parsed === undefined) {
        complete = false;
        continue;
      }
      if (parsed.values === undefined && chosenMode === "grid" && parsed.count === undefined) {
        errors[axis.values.name] = "Say how many points the grid takes from this range: LOW … HIGH, N.";
        complete = false;
        continue;
      }
      const axisBody = axisSpec(axis.path.value, parsed, chosenMode);
      specs.push(axisBody);
      const points = axisBody.values?.length ?? axisBody.count;
      if (points !== undefined) {
        combinations *= points;
        axis.count.textContent = plural(points, "value");
      } else {
        axis.count.textContent = `${axisBody.scale} draws`;
      }
      if (axisBody.count !== undefined) axis.preview.textContent = `→ ${spacedValues(axisBody).join(", ")}`;
    }
    const on = axes.length > 0 || (seeds ?? 1) > 1;
    const sweep = { axes: specs, mode: chosenMode, seeds, prune: prune.checked };
    if (chosenMode === "random") sweep.draws = readControl(controls.draws);
    let runs = null;
    if (complete && seeds !== undefined) {
      if (chosenMode === "random") runs = sweep.draws === undefined ? null : sweep.draws * seeds;
      else runs = combinations * seeds;
    }
    return { sweep: on ? sweep : null, runs, errors };
  }

  // The live count under the section, in its summary line and (through onUpdate) on the
  // submit button.
  function update() {
    applies(controls.draws, mode.value === "random");
    const { sweep, runs } = read();
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
      } else how = seedsPart;
    }
    countLine.replaceChildren(text, ...(how ? [el("span", { class: "muted" }, ` (${how})`)] : []));
    summary.textContent = sweep ? `— ${runs === null ? "incomplete" : `queues ${plural(runs, "run")}`}` : "";
    onUpdate();
  }
  section.addEventListener("input", update);
  section.addEventListener("change", update);

  // Back to no sweep: no axis, grid mode, one seed.
  function reset() {
    for (const axis of axes.splice(0)) axis.row.remove();
    setValue(mode, spec.defaults.sweep.mode);
    setValue(controls.draws, STARTING_DRAWS);
    setValue(controls.seeds, spec.defaults.sweep.seeds);
    setValue(prune, spec.defaults.sweep.prune);
    renumber();
    update();
  }

  return { read, reset, refreshPaths };
}
