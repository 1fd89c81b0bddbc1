// The dataset section: a built-in or uploaded dataset (GET /api/datasets lists the uploads,
// after the built-ins) and the knobs that provoke over-fitting; `n_samples` and `noise`
// show for generated datasets only.
import { api, el } from "../api.js";
import { BUILTIN_DATASETS } from "./builtin-datasets.js";
import { applies, fieldAdder, numberInput, selectInput, setValue } from "./fields.js";

const UPLOAD_PREFIX = "upload:"; // the dataset select's value for an upload: "upload:<id>"
const KNOBS = ["validation_split", "test_split", "train_fraction", "label_noise", "n_samples", "noise"];

function uploadShape(item) {
  const image = item.image ? ` (${item.image.join("×")})` : "";
  return `${item.samples} × ${item.features}${image}`;
}

export function uploadLabel(item) {
  return `${item.name} — ${uploadShape(item)}, ${item.task}`;
}

export function datasetSection(form, spec) {
  const { rules } = spec;
  const controls = {};
  const add = fieldAdder(form.querySelector("#dataset-fields"), controls);
  const select = selectInput("dataset.name", spec.datasets.map((name) => [name]));
  const selectField = add("Dataset", select, { className: "span-2", hint: "" });
  add("Validation split", numberInput("dataset.validation_split", rules.validation_split));
  add("Test split", numberInput("dataset.test_split", rules.test_split));
  add("Train fraction", numberInput("dataset.train_fraction", rules.train_fraction), {
    hint: "Share of the training split used",
  });
  add("Label noise", numberInput("dataset.label_noise", rules.label_noise), {
    hint: "Share of training labels corrupted",
  });
  const blankHint = { hint: "Blank: the default" };
  add("Samples", numberInput("dataset.n_samples", rules.n_samples), blankHint);
  add("Noise", numberInput("dataset.noise", rules.noise), blankHint);

  // Uploaded datasets by id, in an option group after the built-ins.
  const uploads = new Map();
  const uploadGroup = el("optgroup", { label: "Uploaded" });
  let uploadsLoaded = false;

  // The option of upload `id`, made if missing (a clone may name an upload not listed yet).
  function uploadOption(id) {
    const value = `${UPLOAD_PREFIX}${id}`;
    let option = [...uploadGroup.children].find((node) => node.value === value);
    if (!option) {
      option = el("option", { value }, `upload #${id}`);
      uploadGroup.append(option);
      if (!uploadGroup.isConnected) select.append(uploadGroup);
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
    const value = select.value;
    return value.startsWith(UPLOAD_PREFIX) ? Number(value.slice(UPLOAD_PREFIX.length)) : null;
  }

  // What the hint says about the selected dataset, and whether n_samples and noise apply.
  function info() {
    const id = selectedUploadId();
    if (id === null) return BUILTIN_DATASETS[select.value] ?? { description: select.value, unknown: true };
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

  function update() {
    const dataset = info();
    const shape = dataset.task === "regression" ? "regression" : `${dataset.classes} classes`;
    selectField.hintNode.textContent = dataset.unknown
      ? dataset.description
      : `${dataset.description} · ${shape}, ${dataset.features} features`;
    for (const key of ["n_samples", "noise"]) applies(controls[`dataset.${key}`], Boolean(dataset.generated));
    if (dataset.generated) {
      controls["dataset.n_samples"].placeholder = `default ${dataset.samples}`;
      controls["dataset.noise"].placeholder = `default ${dataset.noise}`;
    }
  }
  select.addEventListener("change", update);

  async function loadUploads() {
    try {
      const page = await api("/api/datasets?limit=500");
      for (const item of page.items) addUpload(item);
    } catch {
      return; // the built-ins still work; an upload's own errors show beside the control
    } finally {
      uploadsLoaded = true;
    }
    if (selectedUploadId() !== null) update();
  }

  // A just-uploaded dataset, listed first and selected.
  function selectUpload(item) {
    addUpload(item, { first: true });
    select.value = `${UPLOAD_PREFIX}${item.id}`;
    update();
  }

  // DatasetSpec from the inputs that apply.
  function read(readControl) {
    const id = selectedUploadId();
    const dataset = id === null ? { name: select.value } : { name: "upload", upload: { id } };
    for (const key of KNOBS) {
      const control = controls[`dataset.${key}`];
      if (!control.disabled) dataset[key] = readControl(control);
    }
    return dataset;
  }

  function fill(given) {
    const dataset = { ...spec.defaults.dataset, ...given };
    if (dataset.upload) setValue(select, uploadOption(dataset.upload.id).value);
    else setValue(select, dataset.name);
    for (const key of KNOBS) setValue(controls[`dataset.${key}`], dataset[key]);
    update();
  }

  return { select, selectField, loadUploads, selectUpload, read, fill };
}
