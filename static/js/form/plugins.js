// Regularizer plugins that live workers registered (GET /api/regularizers), by name → how
// many workers offer it; every kind select offers them after the built-in kinds. Plugins
// are code on the worker hosts: the form only names one and sends its numeric parameters.
import { api, el } from "../api.js";

export const PLUGIN_PREFIX = "plugin:"; // a kind select's value for a plugin: "plugin:<name>"

const plugins = new Map();
const kindSelects = new Set();

function pluginLabel(name) {
  return plugins.has(name) ? name : `${name} (no live worker has it)`;
}

// The option of plugin `name` in a kind select, made if missing.
export function pluginOption(select, name) {
  const value = `${PLUGIN_PREFIX}${name}`;
  let option = [...select.options].find((node) => node.value === value);
  if (!option) {
    let group = select.querySelector("optgroup.plugins");
    if (!group) {
      group = el("optgroup", { class: "plugins", label: "Plugins" });
      select.append(group);
    }
    option = el("option", { value });
    group.append(option);
  }
  option.textContent = pluginLabel(name);
  return option;
}

// A kind select that offers the plugins known now and those loadPlugins() finds later.
export function offerPlugins(select) {
  for (const name of plugins.keys()) pluginOption(select, name);
  kindSelects.add(select);
}

export async function loadPlugins() {
  let offered;
  try {
    offered = await api("/api/regularizers");
  } catch {
    return; // the built-in kinds still work
  }
  for (const plugin of offered.plugins ?? []) plugins.set(plugin.name, plugin.workers);
  for (const select of kindSelects) {
    if (!select.isConnected) {
      kindSelects.delete(select);
      continue;
    }
    for (const name of plugins.keys()) pluginOption(select, name);
    for (const option of select.querySelectorAll("optgroup.plugins option")) {
      option.textContent = pluginLabel(option.value.slice(PLUGIN_PREFIX.length));
    }
  }
}

// 1e6 rather than 1000000 for a round power of ten; other numbers as they are.
function formatLimit(value) {
  const exponent = value.toExponential().replace("e+", "e");
  return Math.abs(value) >= 1e5 && !exponent.includes(".") ? exponent : String(value);
}

// "strength=0.01, mode=1" → {strength: 0.01, mode: 1}: {value} (undefined when blank) or
// {error}. `limits` are the spec's (form/rules.js `params`).
export function parseParams(text, limits) {
  const entries = text.split(/[,;\n]/).map((entry) => entry.trim()).filter(Boolean);
  if (entries.length === 0) return { value: undefined };
  if (entries.length > limits.maxCount) return { error: `At most ${limits.maxCount} parameters.` };
  const params = {};
  for (const entry of entries) {
    const match = /^([^=\s]+)\s*=\s*(\S+)$/.exec(entry);
    if (!match) return { error: `"${entry}" is not name=number.` };
    const [, name, raw] = match;
    if (!limits.name.test(name) || name.length > limits.nameMaxLength) {
      return {
        error: `"${name}": lower-case letters, digits and _, starting with a letter or _ (${limits.nameMaxLength} at most).`,
      };
    }
    if (name in params) return { error: `"${name}" is given twice.` };
    const number = Number(raw);
    if (!Number.isFinite(number)) return { error: `"${name}": "${raw}" is not a number.` };
    if (number < limits.min || number > limits.max) {
      return { error: `"${name}": must be between ${formatLimit(limits.min)} and ${formatLimit(limits.max)}.` };
    }
    params[name] = number;
  }
  return { value: params };
}

export function formatParams(params) {
  return Object.entries(params ?? {}).map(([name, value]) => `${name}=${value}`).join(", ");
}
