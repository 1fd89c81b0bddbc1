// The compare page's seed groups in words (GET /api/compare/summary?ids=): each group's
// mean ± std over its seeds, the best group by its mean, and whether it beats seed noise,
// the same statistics the sweep page states for its points.
import { api, el } from "./api.js";
import { bestLine, comparisonItems, judgementLine, runLinks, spread } from "./winners.js";

export async function showCompareSummary(ids, container) {
  let summary;
  try {
    summary = await api(`/api/compare/summary?ids=${ids.join(",")}`);
  } catch {
    container.hidden = true; // the bands still show; the words come with the next change
    return;
  }
  const rows = summary.points.map((point) => el("tr", {
    class: summary.best && point.label === summary.best.label ? "best" : "",
  }, el("td", {}, point.label), el("td", { class: "num" }, point.n), el("td", { class: "num" }, spread(point)),
  el("td", {}, runLinks(point.run_ids))));
  container.hidden = false;
  container.replaceChildren(
    el("h2", {}, "Seed groups: more than seed noise?"),
    el("p", { id: "compare-best" }, ...bestLine(summary)),
    el("p", { id: "compare-judgement", dataset: { judgement: summary.judgement } }, ...judgementLine(summary)),
    el("ul", { class: "sweep-comparisons", id: "compare-comparisons" }, ...comparisonItems(summary)),
    el("table", { class: "data compact", id: "compare-points" },
      el("thead", {}, el("tr", {}, el("th", {}, "group"), el("th", { class: "num" }, "seeds"),
        el("th", { class: "num" }, "best val data loss (mean ± std)"), el("th", {}, "runs"))),
      el("tbody", {}, rows)),
  );
}
