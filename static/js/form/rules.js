// What the new-experiment form knows of the spec, read from the served schema (schema.js):
// each input's bounds, the choices of each select, the defaults, and the sweep's limits.
// Only how a field is shown (its step, a blank that means "the default") is written here.

// Which strengths a regularizer kind reads: app/spec names each kind after the strength
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

// The inputs a layer row may show in its size cell, by the spec's field name: each type
// shows those its own schema has. `step` and `blankIsDefault` are how the form shows them.
export const LAYER_FIELDS = [
  { key: "units", label: "units" },
  { key: "filters", label: "filters" },
  { key: "kernel_size", label: "kernel", blankIsDefault: true },
  { key: "pool_size", label: "pool" },
  { key: "recurrent_dropout", label: "rec. dropout", step: 0.05 },
  { key: "return_sequences", label: "sequences", check: true },
];

// What a layer row needs of each layer type: the size-cell inputs it has, their rules, the
// dropout rule, its defaults and every property it takes (a clone's extras are kept only
// where the type has them).
function layerKind(schema, model) {
  const rules = {};
  const fields = [];
  for (const { key, step, blankIsDefault, check } of LAYER_FIELDS) {
    if (!(key in model.properties)) continue;
    fields.push(key);
    if (!check) rules[key] = numberRule(schema.property(model, key), { step, blankIsDefault });
  }
  rules.dropout = numberRule(schema.property(model, "dropout"), { step: 0.05 });
  return { fields, rules, defaults: schema.defaults(model), properties: Object.keys(model.properties) };
}

// A plugin's parameters: an object of name → number. JSON Schema says the names' rule in
// `propertyNames` (or as the key of `patternProperties`) and the values' in
// `additionalProperties` (or as that key's value).
function pluginParams(schema, node) {
  const [keyPattern, patternValue] = Object.entries(node.patternProperties ?? {})[0] ?? [];
  const names = node.propertyNames ?? {};
  const values = typeof node.additionalProperties === "object" ? node.additionalProperties : patternValue;
  if (!values) throw new Error("the spec's plugin parameters without a rule for their values");
  const { min, max } = schema.unwrap(values).bounds();
  return {
    name: pattern(names.pattern ?? keyPattern),
    nameMaxLength: names.maxLength,
    maxCount: node.maxProperties,
    min,
    max,
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
  const layers = Object.fromEntries(
    Object.entries(layerModels).map(([type, model]) => [type, layerKind(schema, model)]),
  );
  const strengths = Object.entries(schema.model("RegularizerSpec").properties)
    .filter(([, node]) => schema.unwrap(node).node.type === "number")
    .map(([name]) => name);
  const params = pluginParams(schema, prop("RegularizerSpec", "params").node);
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
    layerTypes: Object.keys(layers),
    layers,
    activations: choices(prop(Object.values(layerModels)[0], "activation")),
    optimizers: choices(prop("TrainingSpec", "optimizer")),
    loops: choices(prop("TrainingSpec", "loop")),
    scheduleKinds: choices(prop("ScheduleSpec", "kind")),
    sweepModes: choices(prop("SweepIn", "mode")),
    regularizerKinds: regularizerKinds.filter((kind) => kind !== "plugin"),
    strengths,
    kindFields: kindFields(regularizerKinds, strengths),
    params,
    maxLayers: layerProperty.node.maxItems,
    maxAxes: prop("SweepIn", "axes").node.maxItems,
    maxAxisValues: prop("AxisIn", "values").node.maxItems,
    axisCount: { min: count.min, max: count.max },
    defaults: {
      dataset: schema.defaults("DatasetSpec"),
      training: schema.defaults("TrainingSpec"),
      schedule: schema.defaults("ScheduleSpec"),
      earlyStopping: schema.defaults("EarlyStoppingSpec"),
      sweep: schema.defaults("SweepIn"),
    },
  };
}
