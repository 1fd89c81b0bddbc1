// The workers page: every worker seen in the last five minutes (GET /api/workers), its
// slots as it last reported them (GPU memory and utilization, or the CPU; the run it
// trains, a pack's members, or why it waits), refreshed every few seconds.
import { api, connectionBanner, el } from "./api.js";
import { statusBadge } from "./status.js";

const REFRESH_MS = 3000;
const list = document.querySelector("#workers");
const empty = document.querySelector("#empty");
const banner = connectionBanner();
const STATES = {
  live: "live",
  silent: "silent: not heard from for over a minute",
  stopped: "stopped",
};

function ago(seconds) {
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

function meter(fraction, text, label) {
  const percent = Math.max(0, Math.min(100, 100 * fraction));
  return el("span", { class: `meter${percent >= 90 ? " high" : ""}`, title: label },
    el("span", { class: "bar" }, el("span", { style: `width:${percent.toFixed(1)}%` })), text);
}

function mib(value) {
  return Math.round(value).toLocaleString("en-US");
}

function device(slot) {
  const gpu = slot.gpu;
  if (!gpu) return el("td", { class: "device" }, slot.name === "CPU" ? "CPU" : slot.name);
  return el("td", { class: "device" }, `GPU ${gpu.index} · ${gpu.name}`, el("span", { class: "uuid" }, gpu.uuid));
}

function memory(gpu) {
  if (!gpu || gpu.memory_used_mb === null || gpu.memory_total_mb === null) return el("td", { class: "memory" }, "–");
  const { memory_used_mb: used, memory_total_mb: total } = gpu;
  return el("td", { class: "memory" },
    meter(total ? used / total : 0, `${mib(used)} / ${mib(total)} MiB`, `${mib(total - used)} MiB free`));
}

function utilization(gpu) {
  if (!gpu || gpu.utilization_percent === null) return el("td", { class: "utilization" }, "–");
  return el("td", { class: "utilization" },
    meter(gpu.utilization_percent / 100, `${Math.round(gpu.utilization_percent)} %`, "GPU utilization"));
}

function runLink(run) {
  return el("span", { class: "run" }, el("a", { href: `/runs/${run.id}` }, `#${run.id} ${run.name}`), " ",
    statusBadge(run.status));
}

function doing(slot) {
  const cell = el("td", { class: "doing" });
  if (slot.state === "training") {
    const what = slot.pack_id !== null
      ? `Training pack ${slot.pack_id} (${slot.runs.length} runs as one model):`
      : "Training";
    cell.append(el("div", {}, what), el("div", { class: "runs" }, slot.runs.map(runLink)));
  } else if (slot.state === "waiting") {
    const reason = slot.reason ?? "waiting";
    const busy = reason.startsWith("GPU busy");
    cell.append(el("span", { class: `waits${busy ? " busy" : ""}` },
      reason === "no work" ? "Waiting: no work queued" : `Waiting: ${reason}`));
  } else {
    cell.append(el("span", { class: "waits" }, slot.state === "starting" ? "Starting" : "Stopped"));
  }
  return cell;
}

// "GPU 0", "GPU 0 · slot 2" where several slots share it, "CPU"; the full name on hover.
function slotLabel(slot) {
  if (!slot.gpu) return slot.name;
  const shared = / #(\d+)$/.exec(slot.name);
  return `GPU ${slot.gpu.index}${shared ? ` · slot ${shared[1]}` : ""}`;
}

function slotRow(slot) {
  return el("tr", { dataset: { slot: slot.name, state: slot.state } },
    el("td", { class: "slot", title: slot.name }, slotLabel(slot)), device(slot), memory(slot.gpu),
    utilization(slot.gpu), doing(slot));
}

// A worker that sends no reports (an older one): its devices, and the runs the server
// has it training.
function unreportedRows(worker) {
  return worker.devices.map((name, index) => el("tr", { dataset: { slot: name } },
    el("td", { class: "slot" }, name), el("td", { class: "device" }, name.startsWith("GPU") ? "GPU" : "CPU"),
    el("td", {}, "–"), el("td", {}, "–"),
    el("td", { class: "doing" }, index === 0 && worker.running.length
      ? el("div", { class: "runs" }, worker.running.map((run) => el("a", { href: `/runs/${run.id}` }, `#${run.id}`)))
      : el("span", { class: "waits" }, "not reported"))));
}

function card(worker) {
  const plugins = worker.plugins.length
    ? el("span", { class: "plugins" }, "Plugins: ", worker.plugins.map((name) => el("code", {}, name)))
    : el("span", { class: "plugins muted" }, "No plugins");
  return el("section", { class: `worker ${worker.state}`, dataset: { worker: worker.id } },
    el("div", { class: "worker-head" },
      el("h2", {}, worker.host),
      el("span", { class: "id muted" }, worker.id),
      el("span", { class: `badge worker-${worker.state}`, title: STATES[worker.state] }, STATES[worker.state].split(":")[0]),
      el("span", { class: "spacer" }),
      plugins,
      el("span", { class: "seen muted", title: new Date(worker.last_seen).toLocaleString() },
        `last seen ${ago(worker.seconds_since_seen)}`)),
    worker.state === "silent"
      ? el("p", { class: "note" }, "Not heard from for over a minute: its slots as it last reported them.")
      : null,
    el("table", { class: "data slots" },
      el("colgroup", {}, COLUMNS.map(([, width]) => el("col", { style: `width:${width}` }))),
      el("thead", {}, el("tr", {}, COLUMNS.map(([name]) => el("th", {}, name)))),
      el("tbody", {}, worker.slots.length ? worker.slots.map(slotRow) : unreportedRows(worker))));
}

// The same columns in every worker's table, so that they line up down the page.
const COLUMNS = [["Slot", "11%"], ["Device", "23%"], ["Memory", "19%"], ["Utilization", "13%"], ["Doing", "34%"]];

// Hosts in name order (the API lists the most recently seen first, which changes with
// every report): a card stays where it is between refreshes.
function byHost(a, b) {
  return a.host.localeCompare(b.host) || a.started_at.localeCompare(b.started_at) || a.id.localeCompare(b.id);
}

async function refresh() {
  try {
    const workers = await api("/api/workers");
    banner.set(true);
    list.replaceChildren(...[...workers].sort(byHost).map(card));
    empty.hidden = workers.length > 0;
  } catch (error) {
    if (error.status === undefined) banner.set(false);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
