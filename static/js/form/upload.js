// The upload control under the dataset section: a CSV or NPZ file, the CSV's target column
// and the task, sent to POST /api/datasets; the new dataset is then listed and selected.
// The server's 422 items land beside the control they name.
import { el } from "../api.js";
import { clearField, setFieldError } from "./errors.js";
import { field, selectInput } from "./fields.js";
import { uploadLabel } from "./dataset.js";

// `dataset` is the dataset section (form/dataset.js).
export function uploadPanel(form, dataset) {
  const status = form.querySelector("#upload-status");
  const file = el("input", { type: "file", id: "upload-file", accept: ".csv,.npz,text/csv" });
  const fileField = field("Upload CSV/NPZ…", file, {
    className: "span-2",
    hint: "CSV: a header row, numeric features and a target column. NPZ: arrays x and y.",
  });
  const target = el("input", {
    type: "text", id: "upload-target", maxlength: "200", autocomplete: "off", placeholder: "the last column",
  });
  const targetField = field("Target column", target, { hint: "CSV only: the column to predict" });
  const task = selectInput("", [["", "inferred"], ["classification"], ["regression"]]);
  task.id = "upload-task";
  const taskField = field("Task", task, { hint: "Inferred: labels → classification" });
  const button = el("button", { type: "button", class: "secondary", id: "upload-button" }, "Upload");
  form.querySelector("#upload-fields").append(
    fileField, targetField, taskField, el("div", { class: "upload-actions" }, button),
  );

  // Which control a 422 item of POST /api/datasets belongs beside.
  function fieldFor(loc) {
    if (loc?.[0] === "query" && loc[1] === "target") return targetField;
    if (loc?.[0] === "query" && loc[1] === "task") return taskField;
    return fileField;
  }

  function showRefusal(response, payload) {
    const detail = payload?.detail;
    if (response.status === 422 && Array.isArray(detail)) {
      for (const item of detail) {
        const wrapper = fieldFor(item.loc);
        const previous = wrapper.querySelector(".field-error").textContent;
        const message = String(item.msg ?? "invalid").replace(/^Value error, /, "");
        setFieldError(wrapper, previous ? `${previous}; ${message}` : message);
      }
    } else if (response.status === 413) {
      setFieldError(fileField, `Too large for the server: ${typeof detail === "string" ? detail : "over its limit"}.`);
    } else {
      const text = typeof detail === "string" ? detail : response.statusText;
      setFieldError(fileField, `The server did not take the file: HTTP ${response.status} ${text}`);
    }
    (form.querySelector('#upload-panel [aria-invalid="true"]') ?? file).focus();
  }

  async function upload() {
    for (const wrapper of [fileField, targetField, taskField]) clearField(wrapper);
    status.textContent = "";
    const chosen = file.files[0];
    if (!chosen) {
      setFieldError(fileField, "Choose a CSV or NPZ file first.");
      file.focus();
      return;
    }
    const params = new URLSearchParams({ name: chosen.name.slice(0, 200) || "upload" });
    const format = /\.(csv|npz)$/i.exec(chosen.name)?.[1].toLowerCase();
    if (format) params.set("format", format);
    const column = target.value.trim();
    if (column && format !== "npz") params.set("target", column);
    if (task.value) params.set("task", task.value);
    const contentType = format === "csv" ? "text/csv" : "application/octet-stream";
    button.disabled = true;
    status.textContent = `Uploading ${chosen.name}…`;
    let response;
    let payload;
    try {
      response = await fetch(`/api/datasets?${params}`, {
        method: "POST", body: chosen, headers: { "Content-Type": contentType },
      });
      payload = await response.json().catch(() => null);
    } catch (error) {
      status.textContent = "";
      setFieldError(fileField, `Could not reach the server (${error.message}); nothing was uploaded.`);
      return;
    } finally {
      button.disabled = false;
    }
    if (response.status === 401) {
      location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      return;
    }
    if (response.status === 201 && payload) {
      dataset.selectUpload(payload);
      clearField(dataset.selectField);
      status.textContent = `Uploaded and selected: ${uploadLabel(payload)}.`;
      file.value = "";
      return;
    }
    status.textContent = "";
    showRefusal(response, payload);
  }

  button.addEventListener("click", upload);
  // Enter in the target field uploads (it would otherwise queue the experiment).
  target.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    upload();
  });
  file.addEventListener("change", () => {
    clearField(fileField);
    status.textContent = "";
  });
}
