// The form's inputs: each one named by its spec path (`model.layers.0.units`), wrapped in a
// `.field` with the slot its error goes into, and checked against the rule it was made
// with (form/rules.js) before anything is sent.
import { el } from "../api.js";

export const ruleOf = new WeakMap(); // input → its rule

export function numberInput(name, rule) {
  return setRule(el("input", { type: "number", name }), rule);
}

// A number input checked by `rule` from now on, its attributes saying the same bounds.
export function setRule(input, rule) {
  input.min = String(rule.min);
  input.max = String(rule.max);
  input.step = String(rule.step ?? (rule.integer ? 1 : "any"));
  input.inputMode = rule.integer ? "numeric" : "decimal";
  ruleOf.set(input, rule);
  return input;
}

// A text input or textarea whose length limit is the rule's.
export function textInput(tag, name, rule, attributes = {}) {
  const input = el(tag, { name, maxlength: String(rule.maxLength), ...attributes });
  ruleOf.set(input, rule);
  return input;
}

// A select of [value, label?] pairs.
export function selectInput(name, options) {
  return el("select", { name }, options.map(([value, label]) => el("option", { value }, label ?? value)));
}

// A `.field`: its label, the control, then the `.field-error` the 422 messages go into.
export function field(label, control, { hint, className } = {}) {
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

// A checkbox field with its label after the box.
export function checkField(control, label) {
  const wrapper = field(null, control, { className: "check" });
  wrapper.append(el("span", { class: "label" }, label));
  return wrapper;
}

// A control's value as setValue() takes it back (a checkbox: whether it is checked).
export function valueOf(control) {
  return control.type === "checkbox" ? control.checked : control.value;
}

export function setValue(control, value) {
  if (control.type === "checkbox") control.checked = Boolean(value);
  else control.value = value === undefined || value === null ? "" : String(value);
}

// Only the fields that apply are shown, and only those are checked and sent.
export function applies(control, yes) {
  control.disabled = !yes;
  control.closest(".field").hidden = !yes;
}

// A section's named controls, each appended to `container` in its field.
export function fieldAdder(container, controls) {
  return (label, control, options) => {
    controls[control.name] = control;
    const wrapper = control.type === "checkbox" ? checkField(control, label) : field(label, control, options);
    container.append(wrapper);
    return wrapper;
  };
}

export function rangeMessage(rule) {
  const low = rule.minExclusive ? `above ${rule.min}` : `at least ${rule.min}`;
  const high = rule.maxExclusive ? `below ${rule.max}` : `at most ${rule.max}`;
  return `Must be ${low} and ${high}.`;
}

function checkText(rule, raw) {
  const text = rule.trim ? raw.trim() : raw;
  if (rule.required && text === "") return { error: "Required." };
  if (text.length > rule.maxLength) return { error: `At most ${rule.maxLength} characters.` };
  if (rule.pattern && !rule.pattern.test(text)) {
    return { error: text.includes("\u0000") ? "Must not contain a NUL character." : "Not allowed here." };
  }
  return { value: text === "" ? undefined : text };
}

// One control's value by its rule: {value} (undefined when blank and optional) or {error}.
// A rule with its own `parse` (a plugin's parameters, a sweep axis) reads the text itself.
export function check(control) {
  const rule = ruleOf.get(control);
  const raw = control.value;
  if (rule.parse) return rule.parse(raw);
  if (rule.text) return checkText(rule, raw);
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

// A `read(control)` that checks each control it is given and gathers the errors by name.
export function reader() {
  const errors = {};
  const read = (control) => {
    const { value, error } = check(control);
    if (error) errors[control.name] = error;
    return value;
  };
  return { read, errors };
}
