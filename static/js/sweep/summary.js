// What the sweep says about its winner (GET /api/sweeps/{id} `summary`, in words by
// winners.js), and an offer to add seeds when it cannot tell the best point from seed noise
// (POST /api/sweeps/{id}/seeds; the page then follows the new runs).
import { api } from "../api.js";
import { bestLine, comparisonItems, judgementLine, seedWords } from "../winners.js";

const WHY_ADD = {
  one_seed: "With one seed per point no judgement is possible: the seed noise is unmeasured. "
    + "Add seeds to every point to see whether the best mean beats it.",
  within_noise: "The best mean is within seed noise of its rival: add seeds to tell them apart.",
};

export function renderSummary(summary) {
  const best = document.querySelector("#sweep-best");
  const judgement = document.querySelector("#sweep-judgement");
  const comparisons = document.querySelector("#sweep-comparisons");
  const form = document.querySelector("#add-seeds-form");
  judgement.dataset.judgement = summary?.judgement ?? "";
  best.replaceChildren(...(summary ? bestLine(summary) : []));
  judgement.replaceChildren(...(summary ? judgementLine(summary) : []));
  comparisons.replaceChildren(...(summary ? comparisonItems(summary) : []));
  form.hidden = !(summary?.judgement in WHY_ADD);
  document.querySelector("#add-seeds-why").textContent = WHY_ADD[summary?.judgement] ?? "";
}

// The "Add seeds" form: k more seeds for every point; `onAdded` gets the grown sweep.
export function addSeedsForm(sweepId, onAdded) {
  const form = document.querySelector("#add-seeds-form");
  const status = document.querySelector("#add-seeds-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const count = Number(document.querySelector("#seed-count").value);
    const button = document.querySelector("#add-seeds");
    button.disabled = true;
    status.classList.remove("error");
    try {
      const sweep = await api(`/api/sweeps/${sweepId}/seeds`, { method: "POST", body: { count } });
      status.textContent = `Queued ${seedWords(count)} more for every point.`;
      await onAdded(sweep);
    } catch (error) {
      status.textContent = Object.values(error.fieldErrors?.() ?? {})[0] ?? error.message;
      status.classList.add("error");
    }
    button.disabled = false;
  });
}
