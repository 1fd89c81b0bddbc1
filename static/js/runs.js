// The runs table: a query of the server (filter, order, status, one page at a time),
// refreshed every two seconds. The view lives in the address (?filter=…&order=…&cols=…
// &status=…&offset=…), so a link shares it and Back returns to the previous one. Each
// page's verdicts come in one /api/verdicts request (a finished run's is kept; a finished
// sweep member's only for a while, since its relative verdict moves with its siblings).
import { ApiError, api, connectionBanner, el, formatNumber, formatTime } from "./api.js";
import { isFinal, statusBadge, statusOptions } from "./status.js";
import { verdictCell } from "./verdicts.js";
import { fieldColumn, firstDirection, metricNames, tagChips } from "./runs-columns.js";
import { ColumnPicker } from "./runs-picker.js";

const PAGE_SIZE = 50;
const REFRESH_MS = 2000;
const DEFAULT_ORDER = [{ field: "created", direction: "desc" }]; // the server's: newest first
const state = { offset: 0, status: "", filter: "", order: [], columns: [], selected: new Set(), total: 0 };

const table = document.querySelector("#runs");
const body = table.querySelector("tbody");
const empty = document.querySelector("#empty");
const compareButton = document.querySelector("#compare");
const pageInfo = document.querySelector("#page-info");
const filterInput = document.querySelector("#filter");
const filterError = document.querySelector("#filter-error");
const statusFilter = document.querySelector("#status-filter");
const selectAll = el("input", { type: "checkbox", id: "select-all", "aria-label": "Select all on this page" });
const banner = connectionBanner();
let timer = null;
let generation = 0;
const SIBLINGS_MS = 30000;
const finalVerdicts = new Map(); // run id → { verdict, at } of a run that no longer trains

// --- the view in the address ----------------------------------------------------------

function parseOrder(text) {
  return text.split(",").map((part) => part.trim()).filter(Boolean).map((part) => {
    const words = part.split(/\s+/);
    const last = words[words.length - 1].toLowerCase();
    const direction = last === "asc" || last === "desc" ? (words.pop(), last) : "asc";
    return { field: words.join(" "), direction };
  });
}

const orderText = (order) => order.map(({ field, direction }) => `${field} ${direction}`).join(", ");

function readAddress() {
  const params = new URLSearchParams(location.search);
  state.filter = params.get("filter") ?? "";
  state.order = parseOrder(params.get("order") ?? "");
  state.columns = (params.get("cols") ?? "").split(",").map((field) => field.trim()).filter(Boolean);
  state.status = params.get("status") ?? "";
  state.offset = Math.max(0, Number.parseInt(params.get("offset") ?? "0", 10) || 0);
  filterInput.value = state.filter;
  statusFilter.value = state.status;
}

// Write the view into the address: a new history entry for a new view, the same one for
// paging back and forth.
function writeAddress({ push = true } = {}) {
  const params = new URLSearchParams();
  if (state.filter) params.set("filter", state.filter);
  if (state.order.length) params.set("order", orderText(state.order));
  if (state.columns.length) params.set("cols", state.columns.join(","));
  if (state.status) params.set("status", state.status);
  if (state.offset) params.set("offset", String(state.offset));
  const url = `${location.pathname}${params.size ? `?${params}` : ""}`;
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function change(update, options) {
  update();
  writeAddress(options);
  picker.updateCount();
  renderHead();
  refresh();
}

// --- columns and sorting ---------------------------------------------------------------

function baseColumns() {
  return [
    { key: "select", label: selectAll },
    { key: "id", field: "id", label: "#", className: "num" },
    { key: "name", field: "name", label: "Name" },
    { key: "status", field: "status", label: "Status" },
    { key: "epoch", field: "epochs_done", label: "Epoch" },
    { key: "best", field: "metrics.val_data_loss.best", label: "Best val data loss", className: "num wraps" },
    { key: "verdict", field: "verdict", label: "Verdict", title: "From the data-loss curves; see a run's page for the rule" },
    { key: "regularization", label: "Regularization" },
    { key: "device", field: "device", label: "Device" },
  ];
}

function columns() {
  return [
    ...baseColumns(),
    ...state.columns.map(fieldColumn),
    { key: "created", field: "created", label: "Created", className: "time" },
    { key: "actions", label: "" },
  ];
}

// Click: order by this column (again: the other way). Shift-click: add it as the next key.
function sortBy(field, more) {
  change(() => {
    const order = state.order.length ? state.order : DEFAULT_ORDER;
    const at = order.findIndex((key) => key.field === field);
    const flipped = (key) => ({ field, direction: key.direction === "asc" ? "desc" : "asc" });
    if (more) {
      state.order = at < 0 ? [...order, { field, direction: firstDirection(field) }]
        : order.map((key, index) => (index === at ? flipped(key) : key));
    } else {
      state.order = [at === 0 ? flipped(order[0]) : { field, direction: firstDirection(field) }];
    }
    state.offset = 0;
  });
}

function renderHead() {
  const order = state.order.length ? state.order : DEFAULT_ORDER;
  const cells = columns().map((column) => {
    const th = el("th", { class: column.className, title: column.title, dataset: { key: column.key } });
    if (!column.field) {
      th.append(column.label);
      return th;
    }
    th.dataset.field = column.field;
    const rank = order.findIndex((key) => key.field === column.field);
    if (rank >= 0) {
      const { direction } = order[rank];
      th.dataset.sort = direction;
      th.dataset.rank = order.length > 1 ? String(rank + 1) : "";
      if (rank === 0) th.setAttribute("aria-sort", direction === "asc" ? "ascending" : "descending");
    }
    th.append(el("button", {
      type: "button", class: "sort", title: `Sort by ${column.field} (shift-click: then by it)`,
      onclick: (event) => sortBy(column.field, event.shiftKey),
    }, column.label));
    return th;
  });
  table.querySelector("thead").replaceChildren(el("tr", {}, cells));
}

// --- rows ------------------------------------------------------------------------------

function keptVerdict(run) {
  const kept = finalVerdicts.get(run.id);
  if (!kept) return undefined;
  if (run.sweep_id && Date.now() - kept.at > SIBLINGS_MS) return undefined;
  return kept.verdict;
}

async function loadVerdicts(runs, mine) {
  const wanted = runs.filter((run) => !keptVerdict(run)).map((run) => run.id);
  let fetched = {};
  if (wanted.length) {
    try {
      fetched = (await api(`/api/verdicts?ids=${wanted.join(",")}`)).verdicts;
    } catch {
      return; // the next refresh tries again
    }
  }
  if (mine !== generation) return;
  for (const run of runs) {
    const kept = keptVerdict(run);
    const verdict = kept ?? fetched[String(run.id)];
    if (verdict && !kept && isFinal(run.status)) finalVerdicts.set(run.id, { verdict, at: Date.now() });
    const cell = body.querySelector(`tr[data-id="${run.id}"] td.verdict`);
    if (cell) cell.replaceChildren(verdictCell(verdict));
  }
}

function progress(run) {
  const total = run.epochs_total || 1;
  const width = Math.min(100, (100 * run.epochs_done) / total);
  return el("span", { class: "progress" },
    el("span", { class: "bar" }, el("span", { style: `width:${width}%` })),
    `${run.epochs_done} / ${run.epochs_total}`);
}

async function act(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    alert(error.message);
  }
  await refresh();
}

function actions(run) {
  const cell = el("div", { class: "actions" },
    el("a", { class: "button secondary small", href: `/new?clone=${run.id}`, title: "Open the form with this spec" }, "Clone"));
  if (run.status === "queued" || run.status === "running") {
    cell.append(el("button", {
      type: "button", class: "danger small", dataset: { action: "cancel" },
      onclick: (event) => act(event.target, () => api(`/api/experiments/${run.id}/cancel`, { method: "POST" })),
    }, "Cancel"));
  } else {
    cell.append(el("button", {
      type: "button", class: "danger small", dataset: { action: "delete" },
      onclick: (event) => {
        if (!confirm(`Delete run #${run.id} and its metrics?`)) return;
        act(event.target, () => api(`/api/experiments/${run.id}`, { method: "DELETE" }));
      },
    }, "Delete"));
  }
  return cell;
}

const CELLS = {
  select: (run) => el("td", {}, el("input", {
    type: "checkbox", checked: state.selected.has(run.id), "aria-label": `Select run ${run.id}`,
    onchange: (event) => {
      if (event.target.checked) state.selected.add(run.id);
      else state.selected.delete(run.id);
      updateCompare();
    },
  })),
  id: (run) => el("td", { class: "num" }, run.id),
  // The run's tags under its name (a column of their own would crowd the table).
  name: (run) => el("td", { class: "name" }, el("a", { href: `/runs/${run.id}`, title: run.name }, run.name),
    Object.keys(run.tags ?? {}).length ? el("div", { class: "tags" }, tagChips(run.tags)) : null),
  status: (run) => el("td", {}, statusBadge(run.status)),
  epoch: (run) => el("td", {}, progress(run)),
  best: (run) => el("td", { class: "num" }, formatNumber(run.best_val_data_loss)),
  verdict: (run) => el("td", { class: "verdict" }, verdictCell(keptVerdict(run))),
  regularization: (run) => el("td", {}, run.regularization),
  device: (run) => el("td", {}, run.device ?? ""),
  created: (run) => el("td", { class: "time" }, formatTime(run.created_at)),
  actions: (run) => el("td", {}, actions(run)),
};

function row(run) {
  return el("tr", { dataset: { id: run.id, status: run.status } }, columns().map((column) =>
    (column.extra ? el("td", { class: column.tdClass, dataset: { field: column.key } }, column.cell(run))
      : CELLS[column.key](run))));
}

function updateCompare() {
  const count = state.selected.size;
  compareButton.disabled = count < 1;
  compareButton.textContent = count ? `Compare selected (${count})` : "Compare selected";
}

// --- the query -------------------------------------------------------------------------

function queryParams() {
  const params = new URLSearchParams();
  if (state.status) params.set("status", state.status);
  if (state.filter) params.set("filter", state.filter);
  if (state.order.length) params.set("order_by", orderText(state.order));
  return params;
}

// The server's 422 beside the filter box: where and what it expected.
function showProblem(error) {
  const problems = error instanceof ApiError && error.status === 422 ? error.fieldErrors() : null;
  const text = problems
    ? Object.entries(problems).map(([field, message]) => (field === "filter" ? message : `${field.replace("order_by", "order")}: ${message}`)).join("; ")
    : "";
  filterError.textContent = text;
  filterInput.setAttribute("aria-invalid", problems?.filter ? "true" : "false");
  return Boolean(problems);
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const params = queryParams();
  params.set("limit", PAGE_SIZE);
  params.set("offset", state.offset);
  const metrics = metricNames(state.columns);
  if (metrics.length) params.set("metrics", metrics.join(","));
  try {
    const page = await api(`/api/experiments?${params}`);
    if (mine !== generation) return; // a newer request is on its way
    banner.set(true);
    showProblem(null);
    state.total = page.total;
    body.replaceChildren(...page.items.map(row));
    loadVerdicts(page.items, mine);
    empty.hidden = page.items.length > 0;
    empty.querySelector(".when-filtered").hidden = !(state.filter || state.status);
    empty.querySelector(".when-none").hidden = Boolean(state.filter || state.status);
    const first = page.total ? state.offset + 1 : 0;
    pageInfo.textContent = `${first}–${state.offset + page.items.length} of ${page.total}`;
    const newest = !state.order.length;
    document.querySelector("#previous").textContent = newest ? "‹ Newer" : "‹ Previous";
    document.querySelector("#next").textContent = newest ? "Older ›" : "Next ›";
    document.querySelector("#previous").disabled = state.offset === 0;
    document.querySelector("#next").disabled = state.offset + PAGE_SIZE >= page.total;
    selectAll.checked = page.items.length > 0 && page.items.every((run) => state.selected.has(run.id));
  } catch (error) {
    if (mine !== generation) return;
    if (showProblem(error)) return; // a mistake in the query: no point asking again
    banner.set(false);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

// --- controls ----------------------------------------------------------------------------

const picker = new ColumnPicker(document.querySelector("#column-picker"), {
  chosen: () => state.columns,
  onChange: (fields) => change(() => {
    state.columns = fields;
  }),
  query: queryParams,
});

function applyFilter() {
  const text = filterInput.value.trim();
  if (text === state.filter) {
    refresh(); // the same filter: show its message again, or the runs
    return;
  }
  change(() => {
    state.filter = text;
    state.offset = 0;
  });
}

statusOptions(statusFilter);
statusFilter.addEventListener("change", (event) => change(() => {
  state.status = event.target.value;
  state.offset = 0;
}));
filterInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter") applyFilter();
});
filterInput.addEventListener("input", () => {
  if (filterInput.value === "" && state.filter) applyFilter(); // cleared: every run again
});
document.querySelector("#filter-apply").addEventListener("click", applyFilter);
for (const example of document.querySelectorAll("#filter-help code[data-example]")) {
  example.addEventListener("click", () => {
    filterInput.value = example.textContent;
    applyFilter();
  });
}
document.querySelector("#previous").addEventListener("click", () => change(() => {
  state.offset = Math.max(0, state.offset - PAGE_SIZE);
}, { push: false }));
document.querySelector("#next").addEventListener("click", () => change(() => {
  state.offset += PAGE_SIZE;
}, { push: false }));
selectAll.addEventListener("change", () => {
  for (const tr of body.querySelectorAll("tr")) {
    const id = Number(tr.dataset.id);
    if (selectAll.checked) state.selected.add(id);
    else state.selected.delete(id);
    tr.querySelector("input[type=checkbox]").checked = selectAll.checked;
  }
  updateCompare();
});
compareButton.addEventListener("click", () => {
  const ids = [...state.selected].sort((a, b) => a - b);
  location.href = ids.length === 1 ? `/runs/${ids[0]}` : `/compare?ids=${ids.join(",")}`;
});
window.addEventListener("popstate", () => {
  readAddress();
  picker.updateCount();
  if (picker.root.open) picker.load();
  renderHead();
  refresh();
});

readAddress();
picker.updateCount();
renderHead();
updateCompare();
refresh();
