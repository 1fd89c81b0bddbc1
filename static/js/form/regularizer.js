// A regularizer editor: a kind select and the strength inputs that kind reads (a plugin:
// its parameters), used by each layer row and by the custom loop's global penalty.
import { el } from "../api.js";
import { applies, field, numberInput, ruleOf, selectInput, setValue } from "./fields.js";
import { PLUGIN_PREFIX, formatParams, offerPlugins, parseParams, pluginOption } from "./plugins.js";

// app/spec's DEFAULT_STRENGTH: what an unset strength of the chosen kind means. The
// schema does not carry it; tests/test_static_contract.py ties the two.
export const DEFAULT_STRENGTH = 0.01;
const KIND_LABELS = { l1l2: "l1 + l2" };
const STRENGTH_LABELS = { l1: "L1", l2: "L2", smoothness: "smoothness" };

// A few words for a regularizer spec, e.g. "L1 0.001 + L2 0.01" (as the server says it).
export function describeRegularizer(spec) {
  if (spec.kind === "plugin") return `${spec.plugin}(${formatParams(spec.params)})`;
  if (spec.kind === "l1l2") return `L1 ${spec.l1} + L2 ${spec.l2}`;
  if (spec.kind === "smoothness") return `smoothness ${spec.smoothness}`;
  return `${spec.kind.toUpperCase()} ${spec[spec.kind]}`;
}

// `prefix` is the spec path, e.g. `training.global_regularizer`; a layer row's names are
// set when it is numbered, from each input's `data-key` under `name` (the layer's field:
// `regularizer`, `recurrent_regularizer`). `label`: full labels (a section) or short ones
// (a table cell).
export function regularizerEditor(spec, prefix, { label, name: fieldName = "regularizer" }) {
  const { rules, kindFields } = spec;
  const kind = selectInput(`${prefix}.kind`, [["none"], ...spec.regularizerKinds.map((name) => [name, KIND_LABELS[name]])]);
  kind.dataset.key = `${fieldName}.kind`;
  offerPlugins(kind);
  const strengths = {};
  const fields = {};
  for (const key of spec.strengths) {
    const input = numberInput(`${prefix}.${key}`, rules.strength);
    input.dataset.key = `${fieldName}.${key}`;
    input.placeholder = String(DEFAULT_STRENGTH);
    strengths[key] = input;
    const short = STRENGTH_LABELS[key] ?? key;
    fields[key] = field(label ? `${short[0].toUpperCase()}${short.slice(1)} strength` : short, input);
  }
  const params = el("input", {
    type: "text", name: `${prefix}.params`, class: "params", autocomplete: "off", spellcheck: "false",
    placeholder: "strength=0.01, mode=1",
  });
  params.dataset.key = `${fieldName}.params`;
  ruleOf.set(params, { parse: (text) => parseParams(text, spec.params) });
  fields.params = field(label ? "Plugin parameters" : "params", params, {
    className: "params", hint: label ? "name=number, comma-separated; blank: the plugin's defaults" : undefined,
  });
  const none = el("span", { class: "muted none" }, "–");
  const editor = { kind, strengths, params, fields, none, onUpdate: null };
  const isPlugin = () => kind.value.startsWith(PLUGIN_PREFIX);

  function update() {
    const wanted = kindFields[kind.value] ?? [];
    for (const key of Object.keys(strengths)) applies(strengths[key], wanted.includes(key));
    applies(params, isPlugin());
    none.hidden = wanted.length > 0 || isPlugin();
    editor.onUpdate?.();
  }
  kind.addEventListener("change", update);

  function fill(regularizer) {
    if (regularizer?.kind === "plugin") {
      pluginOption(kind, regularizer.plugin);
      setValue(kind, `${PLUGIN_PREFIX}${regularizer.plugin}`);
    } else {
      setValue(kind, regularizer?.kind ?? "none");
    }
    for (const key of Object.keys(strengths)) setValue(strengths[key], regularizer?.[key] ?? DEFAULT_STRENGTH);
    setValue(params, formatParams(regularizer?.params));
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

  // The spec of the chosen penalty (undefined for none), each input through `read`.
  function read(readControl) {
    if (kind.value === "none") return undefined;
    if (isPlugin()) {
      return { kind: "plugin", plugin: kind.value.slice(PLUGIN_PREFIX.length), params: readControl(params) };
    }
    const regularizer = { kind: kind.value };
    for (const key of kindFields[kind.value]) regularizer[key] = readControl(strengths[key]);
    return regularizer;
  }
  return Object.assign(editor, { update, fill, copy, read, isPlugin });
}
