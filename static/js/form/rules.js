// What the new-experiment form knows of the spec, read from the served schema (schema.js):
// each input's bounds, the choices of each select, the defaults, and the sweep's limits.
// Only how a field is shown (its step, a blank that means "the default") is written here.

// Which strengths a regularizer kind reads: app/spec.py names each kind after the strength
// fields it takes ("l1l2" reads l1 and l2); tests/test_static_contract.py holds it to that.
function kindFields(kinds, strengths) {
  return Object.fromEntries(kinds.map((kind) => [kind, strengths.filter((name) => kind.includes(name))]));
}

// A number input's rule from a property: its bounds; blank is allowed where the spec takes
// null (or where `blankIsDefault` says the server fills the default in).
function numberRule(property, { step, blankIsDefault = false } = {}) {
  const bounds = property.bounds();
  if (bounds.min === undefined || bounds.max === undefined) {
    throw new Error("a number field of the spec without both bounds");
  }
  return { ...bounds, optional: property.nullable || blankIsDefault, step };
}

// A pattern of the spec as a RegExp; one that JavaScript cannot read is left to the server.
function pattern(source) {
  if (source === undefined) return undefined;
  try {
    return new RegExp(source, "u");
  } catch {
    return undefined;
  }
}

function textRule(property, { trim = false } = {}) {
  const node = property.node;
  return {
    text: true,
    required: !property.nullable && (node.minLength ?? 0) > 0,
    maxLength: node.maxLength,
    pattern: pattern(node.pattern),
    trim,
  };
}

function choices(property) {
  const values = property.node.enum;
  if (!Array.isArray(values)) throw new Error("a choice of the spec without an enum");
  return values;
}

// Everything the form reads from `schema` (a Schema of schema.js).
export function formRules(schema) {
  const prop = (model, path) => schema.property(model, path);
  const layerProperty = prop("ModelSpec", "layers");
  const layerModels = schema.variants(layerProperty.node.items, "type");
  // Conv1D and Conv2D share their fields (app/spec.py's _ConvLayer); dropout is every type's.
  const dense = layerModels.dense;
  const conv = layerModels.conv1d;
  const strengths = Object.entries(schema.model("RegularizerSpec").properties)
    .filter(([, node]) => schema.unwrap(node).node.type === "number")
    .map(([name]) => name);
  const params = prop("RegularizerSpec", "params").node;
  const [paramPattern, paramValue] = Object.entries(params.patternProperties)[0];
  const paramBounds = schema.unwrap(paramValue).bounds();
  const regularizerKinds = choices(prop("RegularizerSpec", "kind"));
  const count = prop("AxisIn", "count").bounds();

  const rules = {
    name: textRule(prop("ExperimentSpec", "name"), { trim: true }),
    notes: textRule(prop("ExperimentSpec", "notes")),
    validation_split: numberRule(prop("DatasetSpec", "validation_split"), { step: 0.05 }),
    test_split: numberRule(prop("DatasetSpec", "test_split"), { step: 0.05 }),
    train_fraction: numberRule(prop("DatasetSpec", "train_fraction"), { step: 0.05 }),
    label_noise: numberRule(prop("DatasetSpec", "label_noise"), { step: 0.05 }),
    n_samples: numberRule(prop("DatasetSpec", "n_samples"), { step: 10 }),
    noise: numberRule(prop("DatasetSpec", "noise"), { step: 0.05 }),
    units: numberRule(prop(dense, "units")),
    filters: numberRule(prop(conv, "filters")),
    kernel_size: numberRule(prop(conv, "kernel_size"), { blankIsDefault: true }),
    pool_size: numberRule(prop(conv, "pool_size")),
    dropout: numberRule(prop(dense, "dropout"), { step: 0.05 }),
    strength: numberRule(prop("RegularizerSpec", strengths[0]), { step: "any" }),
    epochs: numberRule(prop("TrainingSpec", "epochs")),
    batch_size: numberRule(prop("TrainingSpec", "batch_size")),
    learning_rate: numberRule(prop("TrainingSpec", "learning_rate"), { step: "any" }),
    seed: numberRule(prop("TrainingSpec", "seed")),
    weight_decay: numberRule(prop("TrainingSpec", "weight_decay"), { step: "any" }),
    warmup_epochs: numberRule(prop("ScheduleSpec", "warmup_epochs")),
    final_fraction: numberRule(prop("ScheduleSpec", "final_fraction"), { step: 0.05 }),
    patience: numberRule(prop("EarlyStoppingSpec", "patience")),
    min_delta: numberRule(prop("EarlyStoppingSpec", "min_delta"), { step: "any" }),
    histogram_every: numberRule(prop("TrainingSpec", "histogram_every")),
    seeds: numberRule(prop("SweepIn", "seeds")),
    draws: numberRule(prop("SweepIn", "draws")),
  };
  rules.seeds.optional = false; // the form always says how many seeds
  rules.draws.optional = false; // and, in random mode, how many draws

  return {
    rules,
    datasets: choices(prop("DatasetSpec", "name")).filter((name) => name !== "upload"),
    layerTypes: Object.keys(layerModels),
    activations: choices(prop(dense, "activation")),
    optimizers: choices(prop("TrainingSpec", "optimizer")),
    loops: choices(prop("TrainingSpec", "loop")),
    scheduleKinds: choices(prop("ScheduleSpec", "kind")),
    sweepModes: choices(prop("SweepIn", "mode")),
    regularizerKinds: regularizerKinds.filter((kind) => kind !== "plugin"),
    strengths,
    kindFields: kindFields(regularizerKinds, strengths),
    params: {
      name: pattern(paramPattern),
      nameMaxLength: params.propertyNames?.maxLength,
      maxCount: params.maxProperties,
      min: paramBounds.min,
      max: paramBounds.max,
    },
    maxLayers: layerProperty.node.maxItems,
    maxAxes: prop("SweepIn", "axes").node.maxItems,
    maxAxisValues: prop("AxisIn", "values").node.maxItems,
    axisCount: { min: count.min, max: count.max },
    defaults: {
      dataset: schema.defaults("DatasetSpec"),
      training: schema.defaults("TrainingSpec"),
      schedule: schema.defaults("ScheduleSpec"),
      earlyStopping: schema.defaults("EarlyStoppingSpec"),
      layer: schema.defaults(conv),
      sweep: schema.defaults("SweepIn"),
    },
  };
}
