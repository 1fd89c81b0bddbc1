// The runs table's columns: each knows its heading, the query field it sorts by (the
// server's order_by names it) and how to read its cell from a run of /api/experiments.
// Extra columns are query fields too: params.<path>, metrics.<name>.<summary>,
// tags.<key> and the attributes the table does not show by default.
import { el, formatNumber, formatTime } from "./api.js";

export const SUMMARIES = ["best", "last", "min", "max"];
// Attributes a person may add as columns (the rest are shown already).
export const EXTRA_ATTRIBUTES = ["dataset", "source", "sweep", "pack", "started", "finished", "epochs_done"];
const TIMES = new Set(["created", "started", "finished"]);
// Sorting by these starts with the largest (newest) first; the rest start smallest first.
const DESCENDING_FIRST = new Set(["id", "created", "started", "finished", "epochs_done"]);

export function firstDirection(field) {
  return DESCENDING_FIRST.has(field) ? "desc" : "asc";
}

// A tag as the run page and `reglab tag` write it: key=value, or a bare label.
export function tagText(key, value) {
  return value === null || value === undefined ? key : `${key}=${value}`;
}

export function tagChips(tags) {
  return Object.entries(tags ?? {}).map(([key, value]) =>
    el("span", { class: "tag", title: tagText(key, value) }, tagText(key, value)));
}

// The value at a spec path such as "model.layers.0.regularizer.l2" or "model.layers[*].dropout"
// ([*]: every element, shown comma-separated).
export function valueAt(node, path) {
  const parts = path.replace(/\[(\*|\d+)\]/g, ".$1").split(".").filter((part) => part !== "");
  let values = [node];
  for (const part of parts) {
    const next = [];
    for (const value of values) {
      if (value === null || value === undefined || typeof value !== "object") continue;
      if (part === "*" && Array.isArray(value)) next.push(...value);
      else if (part in value) next.push(value[part]);
    }
    values = next;
  }
  const present = values.filter((value) => value !== null && value !== undefined && typeof value !== "object");
  return present.length ? present : null;
}

function show(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : formatNumber(value);
  return String(value);
}

function attributeValue(run, field) {
  switch (field) {
    case "created": return run.created_at;
    case "started": return run.started_at;
    case "finished": return run.finished_at;
    case "sweep": return run.sweep_id;
    case "pack": return run.pack?.id ?? null;
    case "dataset": {
      const dataset = run.spec?.dataset;
      return dataset?.upload?.name ?? dataset?.name ?? run.script?.dataset ?? null;
    }
    default: return run[field] ?? null;
  }
}

// The heading of a field's column: short, with the whole field in its tooltip.
export function fieldLabel(field) {
  if (field.startsWith("params.")) return field.slice(7).replace(/^model\./, "");
  if (field.startsWith("metrics.")) {
    const rest = field.slice(8);
    const cut = rest.lastIndexOf(".");
    return `${rest.slice(0, cut)} (${rest.slice(cut + 1)})`;
  }
  if (field.startsWith("tags.")) return `tag ${field.slice(5)}`;
  return field.replace("_", " ");
}

// A column for any query field the person added.
export function fieldColumn(field) {
  const numeric = field.startsWith("metrics.") || ["sweep", "pack", "epochs_done"].includes(field);
  return {
    key: field,
    field: field.includes("[*]") ? null : field, // "any layer" cannot order the runs
    label: fieldLabel(field),
    title: field,
    className: `${numeric ? "num " : ""}extra wraps`,
    extra: true,
    cell(run) {
      if (field.startsWith("params.")) {
        const values = valueAt(run.spec, field.slice(7));
        return values ? values.map(show).join(", ") : "–";
      }
      if (field.startsWith("metrics.")) {
        const rest = field.slice(8);
        const cut = rest.lastIndexOf(".");
        return formatNumber(run.metrics?.[rest.slice(0, cut)]?.[rest.slice(cut + 1)]);
      }
      if (field.startsWith("tags.")) {
        const key = field.slice(5);
        if (!(key in (run.tags ?? {}))) return "–";
        return run.tags[key] ?? "✓";
      }
      const value = attributeValue(run, field);
      return TIMES.has(field) ? formatTime(value) : show(value);
    },
    tdClass: TIMES.has(field) ? "time" : numeric ? "num" : "",
  };
}

// The metric names that metric columns need summed up on each run of the page.
export function metricNames(fields) {
  const names = new Set();
  for (const field of fields) {
    if (!field.startsWith("metrics.")) continue;
    const rest = field.slice(8);
    names.add(rest.slice(0, rest.lastIndexOf(".")));
  }
  return [...names];
}
