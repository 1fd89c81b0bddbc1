// The runs table's column picker: the settings, metric summaries, tags and attributes of
// the runs that match, each a checkbox, and a box for any other query field (checked by
// asking the server to order by it, so a typo gets the server's own message).
import { api, el } from "./api.js";
import { EXTRA_ATTRIBUTES, SUMMARIES } from "./runs-columns.js";

const NOT_SETTINGS = new Set(["name", "notes"]);

// Each leaf of a spec with its path, list indexes as ".0" (as filters write them).
function leaves(node, path, out) {
  if (node === null || node === undefined) return out;
  if (Array.isArray(node)) node.forEach((child, index) => leaves(child, `${path}.${index}`, out));
  else if (typeof node === "object") {
    for (const [key, child] of Object.entries(node)) {
      if (!path && NOT_SETTINGS.has(key)) continue;
      leaves(child, path ? `${path}.${key}` : key, out);
    }
  } else out.add(path);
  return out;
}

// What the runs that match offer as columns.
function vocabulary(runs) {
  const params = new Set();
  const metrics = new Set();
  const tags = new Set();
  for (const run of runs) {
    if (run.spec) leaves(run.spec, "", params);
    for (const name of Object.keys(run.metrics ?? {})) metrics.add(name);
    for (const key of Object.keys(run.tags ?? {})) tags.add(key);
  }
  // Per-layer series (kernel_norm/dense_0...) after the run's own metrics.
  const byName = (a, b) => Number(a.includes("/")) - Number(b.includes("/")) || a.localeCompare(b);
  return { params: [...params], metrics: [...metrics].sort(byName), tags: [...tags].sort() };
}

export class ColumnPicker {
  // `chosen()` gives the fields shown now; `onChange(fields)` is told the new list;
  // `query()` the current filter's parameters (the picker offers what those runs have).
  constructor(root, { chosen, onChange, query }) {
    this.root = root;
    this.chosen = chosen;
    this.onChange = onChange;
    this.query = query;
    this.panel = root.querySelector(".picker-panel");
    this.summary = root.querySelector("summary");
    root.addEventListener("toggle", () => {
      if (root.open) this.load();
    });
    document.addEventListener("click", (event) => {
      if (root.open && !root.contains(event.target)) root.open = false; // a click elsewhere
    });
    this.updateCount();
  }

  updateCount() {
    const count = this.chosen().length;
    this.summary.textContent = count ? `Columns (+${count})` : "Columns";
  }

  set(field, on) {
    const fields = this.chosen().filter((item) => item !== field);
    if (on) fields.push(field);
    this.onChange(fields);
    this.updateCount();
  }

  box(field, label) {
    return el("label", { class: "pick", title: field },
      el("input", {
        type: "checkbox", checked: this.chosen().includes(field), dataset: { field },
        onchange: (event) => this.set(field, event.target.checked),
      }), ` ${label}`);
  }

  async load() {
    this.panel.replaceChildren(el("p", { class: "muted" }, "Looking at the runs that match…"));
    const params = this.query();
    params.set("limit", "100");
    params.set("offset", "0");
    params.set("metrics", "*");
    let runs = [];
    try {
      runs = (await api(`/api/experiments?${params}`)).items;
    } catch {
      try {
        runs = (await api("/api/experiments?limit=100&metrics=*")).items; // the filter is wrong
      } catch {
        runs = [];
      }
    }
    this.render(vocabulary(runs));
  }

  render({ params, metrics, tags }) {
    const known = new Set([
      ...params.map((path) => `params.${path}`),
      ...metrics.flatMap((name) => SUMMARIES.map((summary) => `metrics.${name}.${summary}`)),
      ...tags.map((key) => `tags.${key}`),
      ...EXTRA_ATTRIBUTES,
    ]);
    const others = this.chosen().filter((field) => !known.has(field));
    const group = (title, id, children, empty) => el("section", { class: "picker-group", id },
      el("h3", {}, title), children.length ? el("div", { class: "picks" }, children) : el("p", { class: "muted" }, empty));
    const metricRows = metrics.map((name) => el("div", { class: "metric-pick", dataset: { metric: name } },
      el("span", { class: "metric-name", title: name }, name),
      SUMMARIES.map((summary) => this.box(`metrics.${name}.${summary}`, summary))));
    this.panel.replaceChildren(
      others.length ? group("Shown", "pick-shown", others.map((field) => this.box(field, field)), "") : "",
      group("Settings (params.)", "pick-params", params.map((path) => this.box(`params.${path}`, path)),
        "No queued run matches: a script run has no spec."),
      group("Metric summaries (metrics.)", "pick-metrics", metricRows, "No run that matches has metrics yet."),
      group("Tags (tags.)", "pick-tags", tags.map((key) => this.box(`tags.${key}`, key)),
        "No run that matches has tags: add them on a run's page or with `reglab tag`."),
      group("Attributes", "pick-attributes", EXTRA_ATTRIBUTES.map((name) => this.box(name, name)), ""),
      this.fieldBox());
  }

  // Any field of the query language, e.g. params.model.layers[*].dropout.
  fieldBox() {
    const input = el("input", { type: "text", id: "column-field", placeholder: "any field, e.g. params.training.seed",
      "aria-label": "Add a column by its field", spellcheck: "false" });
    const error = el("span", { class: "field-error", id: "column-error", role: "alert" });
    const add = async () => {
      const field = input.value.trim();
      if (!field) return;
      error.textContent = "";
      try {
        // The server knows its fields: ordering by one checks it ([*] cannot order, [0] can).
        await api(`/api/experiments?limit=1&order_by=${encodeURIComponent(field.replaceAll("[*]", "[0]"))}`);
      } catch (problem) {
        error.textContent = Object.values(problem.fieldErrors?.() ?? {})[0] ?? problem.message;
        return;
      }
      input.value = "";
      this.set(field, true);
      this.load();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") add();
    });
    return el("section", { class: "picker-group" }, el("h3", {}, "Another field"),
      el("div", { class: "picks" }, input, el("button", { type: "button", class: "secondary small", id: "column-add", onclick: add }, "Add"), error));
  }
}
