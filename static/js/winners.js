// The words for a set of points and their seeds (a sweep's `summary`, /api/compare/summary):
// the best point by its MEAN over seeds, the runner-up, and whether the winner beats seed
// noise (the server's Welch test), shared by the sweep and the compare pages.
import { el } from "./api.js";

const has = (x) => x !== null && x !== undefined && Number.isFinite(x);
// A loss to 3 significant digits: 0.409, 0.0213.
export const loss = (x) => (has(x) ? Number(x.toPrecision(3)).toString() : "–");
export const seedWords = (n) => `${n} seed${n === 1 ? "" : "s"}`;

const JUDGEMENT_TEXT = {
  one_seed: "no judgement possible: one seed per point",
  within_noise: "within seed noise",
  real_difference: "a real difference",
  too_early: "too early to judge",
};
const AGAINST_TEXT = { runner_up: "vs the runner-up", unregularized: "vs no regularization" };

export function spread(point) {
  return `${loss(point.mean)}${has(point.std) ? ` ± ${loss(point.std)}` : ""} over ${seedWords(point.n)}`;
}

export function runLinks(ids) {
  return ids.map((id, index) => [index ? ", " : "", el("a", { href: `/runs/${id}` }, `#${id}`)]).flat();
}

// "Best mean: l2=0.0001 0.399 ± 0.02 over 2 seeds (runs #7, #8) · runner-up l2=0 …"
export function bestLine(summary) {
  const { best, runner_up: runnerUp } = summary;
  if (!best) return ["No finished run yet: the best point comes with the first results."];
  const href = best.run_ids.length === 1 ? `/runs/${best.run_ids[0]}` : `/compare?ids=${best.run_ids.join(",")}`;
  const parts = ["Best mean: ", el("a", { href, class: "point-label" }, best.label), " ",
    el("strong", {}, spread(best)), " (", best.run_ids.length === 1 ? "run " : "runs ", ...runLinks(best.run_ids), ")"];
  if (runnerUp) {
    parts.push(el("span", { class: "muted runner-up" }, ` · runner-up ${runnerUp.label} ${spread(runnerUp)}`));
  }
  return parts;
}

// The judgement as a badge, then the server's sentence.
export function judgementLine(summary) {
  return [
    el("span", { class: `badge judgement judgement-${summary.judgement}` },
      JUDGEMENT_TEXT[summary.judgement] ?? summary.judgement),
    summary.text ? ` ${summary.text}` : "",
  ];
}

// Each comparison in numbers (the server's sentence is the judgement's text).
export function comparisonItems(summary) {
  return summary.comparisons.map((comparison) => {
    const numbers = [
      `difference ${loss(comparison.difference)}`,
      has(comparison.std_error) ? `standard error ${loss(comparison.std_error)}` : null,
      has(comparison.p_value) ? `p = ${Number(comparison.p_value.toPrecision(2))}` : null,
      `n = ${comparison.n.join(" and ")} seeds`,
    ].filter(Boolean).join(", ");
    const verdict = !has(comparison.p_value) ? "no test with one seed"
      : comparison.distinguishable ? "told apart from seed noise" : "within seed noise";
    return el("li", { dataset: { against: comparison.against }, class: comparison.distinguishable ? "real" : "noise" },
      el("span", { class: "against" }, `${AGAINST_TEXT[comparison.against] ?? comparison.against} ${comparison.label}: `),
      `${numbers}: ${verdict}`);
  });
}
