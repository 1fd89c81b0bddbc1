// The API's JSON schema as the server serves it (GET /openapi.json, `components.schemas`).
// Pages read the spec's bounds, choices and defaults from here, so that app/spec stays
// the one place they are written. Only what the pages need of JSON Schema: local `$ref`s,
// `X | None` (an anyOf with a null branch), and the numeric and length keywords.
import { api } from "./api.js";

// One property of a schema: its own schema (refs resolved, the null branch dropped) and
// whether the spec lets it be left out (nullable, or a default it takes when missing).
export class Property {
  constructor(node, { nullable, required }) {
    this.node = node;
    this.nullable = nullable;
    this.required = required;
  }

  get default() {
    return this.node.default;
  }

  // {min, max, minExclusive, maxExclusive, integer}: JSON Schema 2020 writes an exclusive
  // bound as its own number, draft 4 as a flag beside `minimum`/`maximum`. Pydantic writes
  // its own `ge`/`gt`/`le`/`lt` where it cannot rewrite a constraint (a strict `int | None`
  // with a validator): those are the same bounds under other names.
  bounds() {
    const node = this.node;
    const exclusiveLow = typeof node.exclusiveMinimum === "number" ? node.exclusiveMinimum : node.gt;
    const exclusiveHigh = typeof node.exclusiveMaximum === "number" ? node.exclusiveMaximum : node.lt;
    return {
      min: exclusiveLow ?? node.minimum ?? node.ge,
      max: exclusiveHigh ?? node.maximum ?? node.le,
      minExclusive: exclusiveLow !== undefined || node.exclusiveMinimum === true,
      maxExclusive: exclusiveHigh !== undefined || node.exclusiveMaximum === true,
      integer: node.type === "integer",
    };
  }
}

export class Schema {
  constructor(document) {
    this.document = document;
    this.schemas = document?.components?.schemas ?? {};
  }

  // A component by name. FastAPI names a model "Name-Input" when its request and response
  // shapes differ; either name is the same model for a page that sends it.
  model(name) {
    const found = this.schemas[name] ?? this.schemas[`${name}-Input`];
    if (!found) throw new Error(`the served schema has no "${name}"`);
    return this.resolve(found);
  }

  // The node a `$ref` points at (followed until a node without one).
  resolve(node) {
    let current = node;
    for (let hops = 0; current && current.$ref !== undefined; hops += 1) {
      if (hops > 32) throw new Error(`a $ref loop at ${node.$ref}`);
      current = this.pointer(current.$ref);
    }
    return current;
  }

  pointer(ref) {
    if (!ref.startsWith("#/")) throw new Error(`only local $refs are read, not ${ref}`);
    let node = this.document;
    for (const raw of ref.slice(2).split("/")) {
      const key = raw.replaceAll("~1", "/").replaceAll("~0", "~");
      node = node?.[key];
      if (node === undefined) throw new Error(`the served schema has no ${ref}`);
    }
    return node;
  }

  // A property by a dotted path from a component (its name or its schema), e.g.
  // ("TrainingSpec", "schedule.kind").
  property(model, path) {
    const modelName = typeof model === "string" ? model : model.title;
    let owner = typeof model === "string" ? this.model(model) : model;
    let property = null;
    for (const key of path.split(".")) {
      if (property) owner = property.node;
      const node = owner.properties?.[key];
      if (node === undefined) throw new Error(`the served schema has no ${modelName}.${path}`);
      property = this.unwrap(node, { required: (owner.required ?? []).includes(key) });
    }
    return property;
  }

  // `X | None` → X, marked nullable; a default written beside the anyOf stays with it.
  unwrap(node, { required = false } = {}) {
    const resolved = this.resolve(node);
    const branches = resolved.anyOf ?? resolved.oneOf;
    if (branches) {
      const kept = branches.filter((branch) => branch.type !== "null");
      if (kept.length === 1 && kept.length < branches.length) {
        const inner = this.resolve(kept[0]);
        const merged = "default" in resolved ? { ...inner, default: resolved.default } : inner;
        return new Property(merged, { nullable: true, required });
      }
    }
    return new Property(resolved, { nullable: false, required });
  }

  // The defaults a component (its name or its schema) fills in for properties left out.
  defaults(model) {
    const out = {};
    const owner = typeof model === "string" ? this.model(model) : model;
    for (const [key, node] of Object.entries(owner.properties ?? {})) {
      const value = this.unwrap(node).default;
      if (value !== undefined && value !== null) out[key] = value;
    }
    return out;
  }

  // The members of a tagged union, by tag: {tagValue: component}, in the document's order.
  variants(node, tag) {
    const out = {};
    for (const branch of node.oneOf ?? node.anyOf ?? []) {
      const model = this.resolve(branch);
      const value = model.properties?.[tag]?.const ?? model.properties?.[tag]?.enum?.[0];
      if (value !== undefined) out[value] = model;
    }
    return out;
  }
}

// The served document, fetched once per page.
let loaded = null;
export function loadSchema() {
  loaded ??= api("/openapi.json").then((document) => new Schema(document));
  loaded.catch(() => {
    loaded = null; // a later call tries again
  });
  return loaded;
}
