// Errors beside the fields they name: the form's own checks and the server's 422 both give
// messages by spec path; each lands beside the input of that name, or else in the box at
// the top and beside the closest row or section (`data-error-for`).
import { el } from "../api.js";

// Paths whose input has another name: an upload's fields are the dataset select's choice.
const PATH_ALIASES = { "dataset.upload": "dataset.name" };

export function clearField(wrapper) {
  wrapper.classList.remove("invalid");
  wrapper.querySelector(".field-error").textContent = "";
  wrapper.querySelector("input, select, textarea")?.removeAttribute("aria-invalid");
}

export function setFieldError(wrapper, message) {
  wrapper.classList.add("invalid");
  wrapper.querySelector(".field-error").textContent = message;
  wrapper.querySelector("input, select, textarea")?.setAttribute("aria-invalid", "true");
}

function describePath(path) {
  const layer = /^model\.layers\.(\d+)(?:\.(.+))?$/.exec(path);
  if (layer) return `Layer ${Number(layer[1]) + 1}${layer[2] ? ` ${layer[2]}` : ""}`;
  const axis = /^axes\.(\d+)(?:\.(.+))?$/.exec(path);
  if (axis) return `Sweep axis ${Number(axis[1]) + 1}${axis[2] ? ` ${axis[2]}` : ""}`;
  return path;
}

// The error display of `form` (its `.form-error` box at the top).
export function formErrors(form) {
  const box = form.querySelector(".form-error");

  // The input a path names, or the closest one above it (`….params.strength` → `….params`).
  function inputFor(path) {
    if (!path) return null;
    const parts = path.split(".");
    while (parts.length) {
      const name = parts.join(".");
      for (const candidate of [PATH_ALIASES[name] ?? name, `${name}.kind`]) {
        const control = form.querySelector(`[name="${CSS.escape(candidate)}"]`);
        if (control && !control.disabled) return control;
      }
      parts.pop();
    }
    return null;
  }

  // The closest section or row slot for a path with no input: `model.layers.0` → its row.
  function slotFor(path) {
    const parts = path.split(".");
    while (parts.length && parts[0] !== "") {
      const slot = form.querySelector(`[data-error-for="${CSS.escape(parts.join("."))}"]`);
      if (slot) return slot;
      parts.pop();
    }
    return null;
  }

  function clear() {
    box.hidden = true;
    box.replaceChildren();
    for (const wrapper of form.querySelectorAll(".field.invalid")) clearField(wrapper);
    for (const slot of form.querySelectorAll("[data-error-for]")) {
      slot.textContent = "";
      const row = slot.closest("tr.row-error");
      if (row) row.hidden = true;
    }
  }

  function showFormError(title, lines) {
    box.replaceChildren(el("h2", {}, title), el("ul", {}, lines.map((line) => el("li", {}, line))));
    box.hidden = false;
  }

  // Errors by spec path (ours, or ApiError.fieldErrors()): beside their input where one has
  // that name, else in the box at the top and beside their row or section.
  function show(errors, { fromServer, what = "experiment" }) {
    clear();
    const unplaced = [];
    for (const [field, message] of Object.entries(errors)) {
      // Model-level messages name their layer up front: "model.layers.0: conv2d needs …".
      const prefixed = field === "" ? /^(model\.layers\.\d+): ([\s\S]*)$/.exec(message) : null;
      const path = prefixed ? prefixed[1] : field;
      const text = prefixed ? prefixed[2] : message;
      const control = inputFor(path);
      if (control) {
        setFieldError(control.closest(".field"), text);
        control.setAttribute("aria-invalid", "true");
        continue;
      }
      unplaced.push(path ? `${describePath(path)}: ${text}` : text);
      const slot = path ? slotFor(path) : null;
      if (slot) {
        slot.textContent = text;
        const row = slot.closest("tr.row-error");
        if (row) row.hidden = false;
      }
    }
    const placed = Object.keys(errors).length - unplaced.length;
    const lines = [...unplaced];
    if (placed === 1) lines.push("One field below needs a change.");
    else if (placed > 1) lines.push(`${placed} fields below need a change.`);
    const title = fromServer ? `The server did not accept this ${what}` : "Nothing was sent: check the form";
    showFormError(title, lines);
    // A collapsed section (the sweep) opens when something in it needs a change.
    for (const details of form.querySelectorAll("details")) {
      if (details.querySelector('[aria-invalid="true"], .section-error:not(:empty)')) details.open = true;
    }
    const first = form.querySelector('[aria-invalid="true"]'); // the first in page order
    if (first) first.focus();
    else box.scrollIntoView({ block: "nearest" });
  }

  // Fixing a field clears its message.
  form.addEventListener("input", (event) => {
    const wrapper = event.target.closest(".field.invalid");
    if (wrapper) clearField(wrapper);
  });

  return { box, clear, show, showFormError };
}
