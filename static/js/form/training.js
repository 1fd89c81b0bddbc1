// The training section: the optimizer's settings, the loop (the custom GradientTape loop
// adds a penalty on every weight), and the extras: the λ schedule, early stopping and the
// weight histograms (TrainingSpec, ScheduleSpec, EarlyStoppingSpec).
import { el } from "../api.js";
import { applies, field, fieldAdder, numberInput, selectInput, setValue } from "./fields.js";
import { regularizerEditor } from "./regularizer.js";

const SCHEDULE_LABELS = { warmup: "warmup: 0 → 1", cosine: "cosine: 1 → final fraction" };
const NUMBERS = ["epochs", "batch_size", "learning_rate", "seed", "weight_decay"];

export function trainingSection(form, spec) {
  const { rules } = spec;
  const controls = {};
  const add = fieldAdder(form.querySelector("#training-fields"), controls);
  add("Epochs", numberInput("training.epochs", rules.epochs));
  add("Batch size", numberInput("training.batch_size", rules.batch_size));
  add("Optimizer", selectInput("training.optimizer", spec.optimizers.map((name) => [name])));
  add("Learning rate", numberInput("training.learning_rate", rules.learning_rate));
  add("Seed", numberInput("training.seed", rules.seed));
  const loop = selectInput("training.loop", spec.loops.map((name) => [name]));
  add("Training loop", loop, { hint: "custom: a GradientTape loop" });
  add("Weight decay", numberInput("training.weight_decay", rules.weight_decay), {
    hint: "Decoupled, in the optimizer",
  });
  const shuffle = el("input", { type: "checkbox", name: "training.shuffle" });
  add("Shuffle each epoch", shuffle);

  const globalFields = form.querySelector("#global-fields");
  const global = regularizerEditor(spec, "training.global_regularizer", { label: true });
  for (const control of [global.kind, global.params, ...Object.values(global.strengths)]) {
    delete control.dataset.key;
  }
  const globalKindField = field("Penalty on all weights", global.kind, {
    className: "span-2",
    hint: "Custom loop only: one penalty on every trainable weight, biases included",
  });
  globalFields.append(globalKindField, ...Object.values(global.fields));

  function updateLoop() {
    const custom = loop.value === "custom";
    globalFields.hidden = !custom;
    global.kind.disabled = !custom;
  }
  loop.addEventListener("change", updateLoop);

  const addExtra = fieldAdder(form.querySelector("#extras-fields"), controls);
  const schedule = selectInput("training.schedule.kind", spec.scheduleKinds.map((kind) => [kind, SCHEDULE_LABELS[kind]]));
  addExtra("Penalty schedule", schedule, { hint: "How every λ changes over the epochs" });
  addExtra("Warmup epochs", numberInput("training.schedule.warmup_epochs", rules.warmup_epochs), {
    hint: "λ rises from 0 over these epochs",
  });
  addExtra("Final fraction", numberInput("training.schedule.final_fraction", rules.final_fraction), {
    hint: "Share of λ left at the last epoch",
  });
  addExtra("Histograms every", numberInput("training.histogram_every", rules.histogram_every), {
    hint: "Epochs between weight histograms; 0: off",
  });
  const earlyStopping = el("input", { type: "checkbox", name: "training.early_stopping" });
  addExtra("Stop early", earlyStopping);
  addExtra("Patience", numberInput("training.early_stopping.patience", rules.patience), {
    hint: "Epochs without a better val_data_loss",
  });
  addExtra("Min improvement", numberInput("training.early_stopping.min_delta", rules.min_delta), {
    hint: "What counts as better",
  });
  const restoreBest = el("input", { type: "checkbox", name: "training.early_stopping.restore_best_weights" });
  addExtra("Restore the best weights", restoreBest);

  function updateExtras() {
    applies(controls["training.schedule.warmup_epochs"], schedule.value === "warmup");
    applies(controls["training.schedule.final_fraction"], schedule.value === "cosine");
    for (const name of ["patience", "min_delta", "restore_best_weights"]) {
      applies(controls[`training.early_stopping.${name}`], earlyStopping.checked);
    }
  }
  schedule.addEventListener("change", updateExtras);
  earlyStopping.addEventListener("change", updateExtras);

  // TrainingSpec from the inputs that apply (the schedule's and early stopping's own
  // fields only when they are on).
  function read(readControl) {
    const training = {};
    for (const key of NUMBERS) training[key] = readControl(controls[`training.${key}`]);
    training.optimizer = controls["training.optimizer"].value;
    training.loop = loop.value;
    training.shuffle = shuffle.checked;
    if (training.loop === "custom") training.global_regularizer = global.read(readControl);
    if (schedule.value === "warmup") {
      training.schedule = { kind: "warmup", warmup_epochs: readControl(controls["training.schedule.warmup_epochs"]) };
    } else if (schedule.value === "cosine") {
      training.schedule = { kind: "cosine", final_fraction: readControl(controls["training.schedule.final_fraction"]) };
    }
    if (earlyStopping.checked) {
      training.early_stopping = {
        patience: readControl(controls["training.early_stopping.patience"]),
        min_delta: readControl(controls["training.early_stopping.min_delta"]),
        restore_best_weights: restoreBest.checked,
      };
    }
    training.histogram_every = readControl(controls["training.histogram_every"]);
    return training;
  }

  function fill(given) {
    const training = { ...spec.defaults.training, ...given };
    for (const key of [...NUMBERS, "optimizer", "loop"]) setValue(controls[`training.${key}`], training[key]);
    setValue(shuffle, training.shuffle);
    global.fill(training.global_regularizer);
    updateLoop();
    const scheduled = { ...spec.defaults.schedule, ...training.schedule };
    setValue(schedule, scheduled.kind);
    setValue(controls["training.schedule.warmup_epochs"], scheduled.warmup_epochs);
    setValue(controls["training.schedule.final_fraction"], scheduled.final_fraction);
    setValue(controls["training.histogram_every"], training.histogram_every);
    const early = { ...spec.defaults.earlyStopping, ...training.early_stopping };
    setValue(earlyStopping, Boolean(training.early_stopping));
    setValue(controls["training.early_stopping.patience"], early.patience);
    setValue(controls["training.early_stopping.min_delta"], early.min_delta);
    setValue(restoreBest, early.restore_best_weights);
    updateExtras();
  }

  return { read, fill };
}
