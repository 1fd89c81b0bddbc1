// A run's tags and notes, edited in place (PATCH /api/experiments/{id}) whatever the run's
// status: a tag is key=value or a bare label, × removes it; the notes open in a text box.
// The server's 422 is shown beside the field it names.
import { ApiError, api, el } from "./api.js";
import { tagText } from "./runs-columns.js";

function problemText(error) {
  if (error instanceof ApiError && error.status === 422) {
    return Object.entries(error.fieldErrors()).map(([field, message]) => `${field}: ${message}`).join("; ");
  }
  return error.message;
}

export class RunNotes {
  // `onSaved(run)` is told the run as the server returns it after an edit.
  constructor(runId, { onSaved }) {
    this.runId = runId;
    this.onSaved = onSaved;
    this.tags = document.querySelector("#run-tags");
    this.tagInput = document.querySelector("#tag-input");
    this.tagError = document.querySelector("#tag-error");
    this.notes = document.querySelector("#run-notes");
    this.notesEditor = document.querySelector("#notes-editor");
    this.notesInput = document.querySelector("#notes-input");
    this.notesError = document.querySelector("#notes-error");
    this.editButton = document.querySelector("#edit-notes");
    const addTag = () => this.addTag();
    this.tagInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") addTag();
    });
    document.querySelector("#tag-add").addEventListener("click", addTag);
    this.editButton.addEventListener("click", () => this.editNotes(true));
    document.querySelector("#notes-cancel").addEventListener("click", () => this.editNotes(false));
    document.querySelector("#notes-save").addEventListener("click", () => this.saveNotes());
  }

  async patch(body, errorBox) {
    errorBox.textContent = "";
    try {
      const run = await api(`/api/experiments/${this.runId}`, { method: "PATCH", body });
      this.onSaved(run);
      return true;
    } catch (error) {
      errorBox.textContent = problemText(error);
      return false;
    }
  }

  async addTag() {
    const text = this.tagInput.value.trim();
    if (!text) return;
    const at = text.indexOf("=");
    const key = at < 0 ? text : text.slice(0, at).trim();
    const value = at < 0 ? null : text.slice(at + 1).trim();
    if (await this.patch({ tags: { [key]: value } }, this.tagError)) this.tagInput.value = "";
  }

  editNotes(open) {
    this.notesEditor.hidden = !open;
    this.editButton.hidden = open;
    this.notes.hidden = open;
    this.notesError.textContent = "";
    if (open) {
      this.notesInput.value = this.current ?? "";
      this.notesInput.focus();
    }
  }

  async saveNotes() {
    const text = this.notesInput.value.trim();
    if (await this.patch({ notes: text || null }, this.notesError)) this.editNotes(false);
  }

  // Show the run's tags and notes (an open notes editor is left as the person has it).
  render(run) {
    this.current = run.notes;
    this.tags.replaceChildren(...Object.entries(run.tags ?? {}).map(([key, value]) =>
      el("span", { class: "tag", dataset: { key } }, tagText(key, value),
        el("button", {
          type: "button", class: "remove", title: `Remove the tag ${key}`, "aria-label": `Remove the tag ${key}`,
          onclick: () => this.patch({ remove_tags: [key] }, this.tagError),
        }, "×"))));
    this.notes.textContent = run.notes ?? "";
    this.notes.classList.toggle("muted", !run.notes);
    if (!run.notes) this.notes.textContent = "No notes.";
    this.editButton.textContent = run.notes ? "Edit notes" : "Add notes";
  }
}
