// A run's verdict as the pages say it (GET /api/experiments/{id}/verdict, /api/verdicts):
// the verdict of its own curves and, for a sweep member, the relative one against the
// sibling point it was judged by ("under-fitting vs l2=0.0001").
import { el } from "./api.js";

export const VERDICT_TEXT = {
  overfitting: "over-fitting",
  underfitting: "under-fitting",
  still_improving: "still improving",
  healthy: "healthy",
  too_early: "too early to tell",
};
const SHORT_TEXT = { too_early: "too early" };

// "over-fitting from epoch 12" (long) or "over-fitting from 12" (short, the runs table).
export function verdictText(verdict, { short = false } = {}) {
  const words = (short && SHORT_TEXT[verdict.verdict]) || (VERDICT_TEXT[verdict.verdict] ?? verdict.verdict);
  if (verdict.from_epoch === null || verdict.from_epoch === undefined) return words;
  return `${words} from ${short ? "" : "epoch "}${verdict.from_epoch}`;
}

// A relative verdict that says which way to move: the runs table shows it before the
// run's own (as the server's `overall` does).
export const SIDED = new Set(["underfitting", "overfitting"]);

// "under-fitting vs l2=0.0001", "the best point (l2=0.0001)", "comparable to l2=0.0001";
// null when the run was not judged against a sibling.
export function relativeText(relative) {
  if (!relative) return null;
  const label = relative.against.label;
  if (relative.verdict === "best") return `the best point (${label})`;
  if (relative.verdict === "comparable") return `comparable to ${label}`;
  return `${VERDICT_TEXT[relative.verdict] ?? relative.verdict} vs ${label}`;
}

// Which runs a relative verdict was judged against, in words: "the mean of runs #3, #4".
export function againstText(against) {
  const ids = against.run_ids.map((id) => `#${id}`).join(", ");
  return against.run_ids.length === 1 ? `run ${ids}` : `the mean of runs ${ids}`;
}

// The runs table's cell: the relative verdict where it says a side (its own verdict in
// the tooltip), else the run's own.
export function verdictCell(verdict) {
  if (!verdict) return "";
  const own = `${verdictText(verdict, { short: true })}: ${verdict.hint} — ${verdict.reason}`;
  const relative = verdict.relative;
  if (!relative || !SIDED.has(relative.verdict)) {
    return el("span", { class: `badge verdict verdict-${verdict.verdict}`, title: own }, verdictText(verdict, { short: true }));
  }
  const title = `${relative.hint} — ${relative.reason} (judged against ${relative.against.label}, `
    + `${againstText(relative.against)}). Its own curves: ${own}`;
  return el("span", {
    class: `badge verdict verdict-${relative.verdict} relative`, title, dataset: { verdict: verdict.verdict },
  }, relativeText(relative));
}
