// The "New experiment" page: an ExperimentSpec as a form whose inputs are named by their
// spec path (`model.layers.0.units`), checked against the bounds of the spec's served
// schema before sending, with the server's 422 shown beside the field it names. `?clone=ID`
// starts from an existing run. The sections live in form/: the dataset and its uploads,
// the layer rows, training, plugins and the sweep. User text only ever goes in as text or
// input values, never as HTML.
import { ApiError, api, el } from "./api.js";
import { loadSchema } from "./schema.js";
import { formErrors } from "./form/errors.js";
import { fieldAdder, reader, setValue, textInput } from "./form/fields.js";
import { datasetSection } from "./form/dataset.js";
import { uploadPanel } from "./form/upload.js";
import { layersSection } from "./form/layers.js";
import { trainingSection } from "./form/training.js";
import { loadPlugins } from "./form/plugins.js";
import { plural, sweepSection } from "./form/sweep.js";
import { formRules } from "./form/rules.js";

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
const CLONE_SUFFIX = " (clone)";

const form = document.querySelector("#experiment-form");
const submitButton = form.querySelector("#submit");
const submitNote = form.querySelector("#submit-note");
const title = document.querySelector("#title");
const lead = document.querySelector("#lead");
const classicLead = lead.textContent;
const errors = formErrors(form);

// The whole form, built from the spec's rules (form/rules.js) once the schema is here.
function buildForm(spec) {
  const run = {};
  const addRun = fieldAdder(form.querySelector("#run-fields"), run);
  const nameInput = textInput("input", "name", spec.rules.name, { type: "text", autocomplete: "off", required: true });
  addRun("Name", nameInput, { className: "span-2" });
  const notesInput = textInput("textarea", "notes", spec.rules.notes, { rows: "2" });
  addRun("Notes", notesInput, { className: "full", hint: "Optional: what this run is meant to show." });

  const dataset = datasetSection(form, spec);
  uploadPanel(form, dataset);
  let sweep = null;
  const layers = layersSection(form, spec, { onRenumber: () => sweep?.refreshPaths() });
  const training = trainingSection(form, spec);
  let sending = false;
  sweep = sweepSection(form, spec, {
    layerCount: () => layers.count(),
    onUpdate: () => {
      if (!sending) setSending(false);
    },
  });

  function submitLabel() {
    const { sweep: asked, runs } = sweep.read();
    if (!asked) return "Queue experiment";
    return runs === null ? "Queue sweep" : `Queue sweep: ${plural(runs, "run")}`;
  }

  function setSending(on, label = "Queueing…") {
    sending = on;
    submitButton.disabled = on;
    submitButton.textContent = on ? label : submitLabel();
  }

  // The spec the form describes, with unset optional fields left out, and the errors found.
  function readForm() {
    const { read, errors: found } = reader();
    const body = {
      name: read(nameInput),
      notes: read(notesInput),
      dataset: dataset.read(read),
      model: { layers: layers.read(read) },
      training: training.read(read),
    };
    return { spec: JSON.parse(JSON.stringify(body)), errors: found }; // drops the undefined keys
  }

  function fill(given) {
    errors.clear();
    setValue(nameInput, given.name);
    setValue(notesInput, given.notes);
    dataset.fill(given.dataset);
    layers.fill(given.model?.layers);
    training.fill(given.training);
  }

  // A sweep's 422 names the base spec as `base.…`: those land where the experiment's would.
  function sweepFieldErrors(error) {
    const found = {};
    for (const [field, message] of Object.entries(error.fieldErrors())) {
      const path = field === "base" ? "" : field.replace(/^base\./, "");
      found[path] = found[path] ? `${found[path]}; ${message}` : message;
    }
    return found;
  }

  async function submit(event) {
    event.preventDefault();
    if (sending) return;
    const { spec: body, errors: found } = readForm();
    const { sweep: asked, errors: sweepErrors } = sweep.read();
    Object.assign(found, sweepErrors);
    if (Object.keys(found).length > 0) {
      errors.show(found, { fromServer: false });
      return;
    }
    errors.clear();
    setSending(true);
    const what = asked ? "sweep" : "experiment";
    let created;
    try {
      if (asked) created = await api("/api/sweeps", { method: "POST", body: { name: body.name, base: body, ...asked } });
      else created = await api("/api/experiments", { method: "POST", body });
    } catch (error) {
      setSending(false);
      if (error instanceof ApiError && error.status === 422) {
        errors.show(asked ? sweepFieldErrors(error) : error.fieldErrors(), { fromServer: true, what });
      } else if (error instanceof ApiError) {
        errors.showFormError(`The server did not queue the ${what}`, [`HTTP ${error.status}: ${error.message}`]);
      } else {
        const where = asked ? "the sweeps" : "the runs list";
        errors.showFormError("Could not reach the server", [
          `${error.message}. The ${what} may not have been queued: check ${where} before trying again.`,
        ]);
      }
      errors.box.scrollIntoView({ block: "nearest" });
      return;
    }
    // Stay disabled while the browser leaves: no second submission.
    window.location.assign(`/${asked ? "sweeps" : "runs"}/${encodeURIComponent(created.id)}`);
  }
  form.addEventListener("submit", submit);

  function showClassic() {
    title.textContent = "New experiment";
    lead.textContent = classicLead;
    fill(CLASSIC);
    sweep.reset();
  }

  let loading = 0; // bumped by the reset link, so that a clone arriving late is dropped

  async function loadClone(id) {
    const mine = ++loading;
    setSending(true, "Loading…");
    submitNote.textContent = `Loading run #${id}…`;
    try {
      if (!/^\d+$/.test(id)) throw new Error("not a run id");
      const source = await api(`/api/experiments/${encodeURIComponent(id)}`);
      if (mine !== loading) return;
      const name = `${source.spec.name.slice(0, spec.rules.name.maxLength - CLONE_SUFFIX.length)}${CLONE_SUFFIX}`;
      fill({ ...source.spec, name });
      title.textContent = `Clone of run #${source.id}`;
      lead.replaceChildren(
        "Copied from ",
        el("a", { href: `/runs/${encodeURIComponent(source.id)}` }, source.name),
        ". Change one knob and queue it again.",
      );
    } catch (error) {
      if (mine !== loading) return;
      const reason = error instanceof ApiError && error.status === 404 ? "no such run" : error.message;
      errors.showFormError(`Could not load run #${id} to clone`, [`${reason}. The form shows the classic instead.`]);
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
  dataset.loadUploads();
  loadPlugins();
  const cloneId = new URLSearchParams(window.location.search).get("clone");
  if (cloneId !== null) loadClone(cloneId);
}

// The form waits for the schema: without it the page knows no bounds to check.
async function start() {
  let spec;
  try {
    spec = formRules(await loadSchema());
  } catch (error) {
    errors.showFormError("Could not load the form", [
      `The spec's schema (/openapi.json) did not come: ${error.message}. Reload the page to try again.`,
    ]);
    return;
  }
  buildForm(spec);
}

start();
