// What the sweep page's charts share: their look, their card, and a click that opens the
// run (or, for a point of several seeds, compares its runs). Plotly.react with a fixed
// uirevision keeps the zoom when the page polls.
/* global Plotly */
import { el } from "../api.js";

export const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
export const BASE_LAYOUT = {
  margin: { l: 64, r: 24, t: 40, b: 52 },
  paper_bgcolor: "rgba(0,0,0,0)",
  plot_bgcolor: "#fff",
  font: { family: "system-ui, sans-serif", size: 12, color: "#1d2330" },
  legend: { orientation: "h", x: 1, xanchor: "right", y: 1.02, yanchor: "bottom", font: { size: 11 } },
};

export const title = (text) => ({ text, font: { size: 14 }, x: 0.01, xanchor: "left" });

// The card of a chart, made once: { card, div, caption } (the caption only when asked for).
export function chartCard(parent, id, { caption = false, before = [] } = {}) {
  let div = document.getElementById(id);
  if (!div) {
    div = el("div", { class: "chart tall", id });
    const card = el("section", { class: "chart-card" }, before, div,
      caption ? el("p", { class: "caption", id: `${id}-caption` }) : null);
    parent.append(card);
  }
  return { card: div.closest(".chart-card"), div, caption: document.getElementById(`${id}-caption`) };
}

// A point's customdata: a run id, or "id,id" for the runs of a point of several seeds.
export const runsData = (ids) => (ids.length === 1 ? ids[0] : ids.join(","));

export function react(div, data, layout) {
  const first = !div.dataset.drawn;
  Plotly.react(div, data, layout, CONFIG);
  if (first) {
    div.dataset.drawn = "1";
    div.on?.("plotly_click", (event) => {
      const data = event.points?.[0]?.customdata;
      if (Number.isInteger(data)) location.href = `/runs/${data}`;
      else if (typeof data === "string" && /^\d+(,\d+)+$/.test(data)) location.href = `/compare?ids=${data}`;
    });
  }
}
