// A sweep's runs as points: the numbers its charts draw (one run's values, a point's mean
// ± std over its seeds, an axis's slice through the best point or its marginal over the
// other settings) and how values are written. The best point, the runner-up and the
// judgement are the server's (GET /api/sweeps/{id} `summary`).
import { isFinal } from "../status.js";

export const has = (x) => x !== null && x !== undefined && Number.isFinite(x);
// Like Python's "{:g}" in the run names: 0.0001, 1e-05, 0.5.
export const fmt = (x) => (has(x) ? Number(x.toPrecision(4)).toString() : "–");
export { loss } from "../winners.js";

export const VAL = { key: "best_val_data_loss", name: "best val_data_loss", symbol: "circle" };
export const TRAIN = { key: "data_loss", name: "final data_loss (training)", symbol: "diamond" };

// Runs whose numbers count in a mean, as the server's summary counts them: the finished
// ones (a run still training has not reached its best; a failed, cancelled or pruned one
// never will). Every run is still drawn as a marker.
export const counts = (run) => run.status === "succeeded";

// Mean and sample standard deviation (null for a single value).
export function meanStd(values) {
  const n = values.length;
  const mean = values.reduce((sum, x) => sum + x, 0) / n;
  if (n < 2) return { n, mean, std: null };
  const variance = values.reduce((sum, x) => sum + (x - mean) ** 2, 0) / (n - 1);
  return { n, mean, std: Math.sqrt(variance) };
}

// One key per point of the sweep (its value on every axis).
export const pointKey = (sweep, point) => sweep.axes.map((axis) => String(point?.[axis.path])).join("|");

export function pointLabel(sweep, point) {
  return sweep.axes.map((axis, index) => `${sweep.labels[index]}=${fmt(point[axis.path])}`).join(" · ");
}

export function runText(sweep, run) {
  const parts = sweep.axes.map((axis, index) => `${sweep.labels[index]}=${fmt(run.point[axis.path])}`);
  if (sweep.seeds > 1 || run.seed !== sweep.base?.training?.seed) parts.push(`seed ${run.seed}`);
  return `#${run.id} ${parts.join(" · ")} (${run.status})${isFinal(run.status) ? "" : ", training"}`;
}

// "2 seeds", "2–3 seeds": how many runs the means of a view are over.
export function countWords(ns, one = "seed", many = `${one}s`) {
  const low = Math.min(...ns);
  const high = Math.max(...ns);
  const range = low === high ? `${low}` : `${low}–${high}`;
  return `${range} ${high === 1 ? one : many}`;
}

// How an axis is drawn: log when its values span a decade or more; a 0 on a log axis sits a
// decade below the smallest positive value and is labelled "0".
export function axisScale(sweep, index, runs) {
  const axis = sweep.axes[index];
  const values = [...new Set(runs.map((run) => run.point[axis.path]).filter(has))].sort((a, b) => a - b);
  const positive = values.filter((x) => x > 0);
  const log = positive.length >= 2 && values.every((x) => x >= 0)
    && ((axis.scale === "log" && axis.values === null) || positive[positive.length - 1] / positive[0] >= 10);
  const zeroAt = log ? positive[0] / 10 : 0;
  const position = (x) => (log && x === 0 ? zeroAt : x);
  const ticks = values.length <= 12 ? { tickvals: values.map(position), ticktext: values.map((x) => fmt(x)) } : {};
  return { path: axis.path, label: sweep.labels[index], log, position, values, ticks };
}

// The runs that share one value of the axis, and the metric's numbers over them:
// `mean` over every counted run, `seedStd` the spread between seeds of one setting (the
// root of the mean within-point variance; null where no setting repeats its seed).
function column(sweep, runs, metric) {
  const values = runs.filter((run) => counts(run) && has(run[metric.key]));
  if (!values.length) return null;
  const byPoint = new Map();
  for (const run of values) {
    const key = pointKey(sweep, run.point);
    if (!byPoint.has(key)) byPoint.set(key, []);
    byPoint.get(key).push(run[metric.key]);
  }
  const seeds = [...byPoint.values()].map((group) => group.length);
  const spreads = [...byPoint.values()].filter((group) => group.length >= 2).map((group) => meanStd(group).std ** 2);
  const seedStd = spreads.length ? Math.sqrt(spreads.reduce((sum, x) => sum + x, 0) / spreads.length) : null;
  return { ...meanStd(values.map((run) => run[metric.key])), settings: byPoint.size, seeds, seedStd };
}

// Which runs an axis chart draws: `slice` the runs whose other settings are the best
// point's, `marginal` every run (the other settings pooled).
export function viewRuns(sweep, runs, index, view, best) {
  if (view !== "slice" || !best) return runs;
  return runs.filter((run) => sweep.axes.every((axis, other) => other === index
    || run.point[axis.path] === best.point[axis.path]));
}

// Per value of the axis: the columns of both metrics, in axis order.
export function axisColumns(sweep, runs, scale) {
  const byValue = new Map();
  for (const run of runs) {
    const x = run.point[scale.path];
    if (!has(x)) continue;
    if (!byValue.has(x)) byValue.set(x, []);
    byValue.get(x).push(run);
  }
  return [...byValue.keys()].sort((a, b) => a - b).map((x) => ({
    x, position: scale.position(x), runs: byValue.get(x),
    val: column(sweep, byValue.get(x), VAL), train: column(sweep, byValue.get(x), TRAIN),
  }));
}

// Every point of the sweep with its runs and the mean ± std of its best val_data_loss.
export function sweepPoints(sweep, runs) {
  const byKey = new Map();
  for (const run of runs) {
    const key = pointKey(sweep, run.point);
    if (!byKey.has(key)) byKey.set(key, { key, point: run.point, runs: [] });
    byKey.get(key).runs.push(run);
  }
  return [...byKey.values()].map((point) => ({ ...point, val: column(sweep, point.runs, VAL) }));
}
