// REST calls and live event streams, shared by every page.
import { isFinal } from "./status.js";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }

  // 422 details as {"model.layers.0.units": "message", ...}
  fieldErrors() {
    const errors = {};
    if (Array.isArray(this.detail)) {
      for (const item of this.detail) {
        const key = item.field ?? "";
        errors[key] = errors[key] ? `${errors[key]}; ${cleanMessage(item.msg)}` : cleanMessage(item.msg);
      }
    }
    return errors;
  }
}

function cleanMessage(message) {
  return String(message ?? "invalid").replace(/^Value error, /, "");
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const options = { method, signal, headers: {} };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    // The session expired (or never was): log in, then come back here.
    location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
    throw new ApiError(401, "log in first");
  }
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, payload?.detail ?? response.statusText);
  return payload;
}

// Follow a run's events. EventSource reconnects by itself and sends Last-Event-ID, so a
// dropped connection resumes without gaps; we close it after the final status.
export function followRun(runId, { onMetrics, onStatus, onConnection } = {}) {
  const source = new EventSource(`/api/experiments/${runId}/events`);
  let closed = false;
  source.addEventListener("open", () => onConnection?.(true));
  source.addEventListener("error", () => {
    if (!closed) onConnection?.(false);
  });
  source.addEventListener("metrics", (event) => onMetrics?.(JSON.parse(event.data)));
  source.addEventListener("status", (event) => {
    const data = JSON.parse(event.data);
    onStatus?.(data);
    if (isFinal(data.status)) {
      closed = true;
      source.close();
    }
  });
  return {
    close() {
      closed = true;
      source.close();
    },
  };
}

// Small DOM helpers: text only, never HTML from data.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatNumber(value, digits = 4) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)) return value.toExponential(2);
  return value.toFixed(digits);
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function formatTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

// A banner at the top of the page while the server is unreachable.
export function connectionBanner() {
  let banner = document.querySelector("#connection");
  if (!banner) {
    banner = el("div", { id: "connection", class: "connection", role: "status", hidden: true });
    document.body.prepend(banner);
  }
  return {
    set(connected) {
      banner.hidden = connected;
      banner.textContent = connected ? "" : "Connection to the server lost, reconnecting…";
    },
  };
}
