"""Page loads in headless Chromium for bench/page_load.py: a fresh profile per repeat,
then each page opened cold, warm and hot, timed by an init script that runs before the
page's own scripts (first chart painted, all charts, 50 rows), plus Resource Timing, long
tasks and `Plotly.react` calls.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# As tests/browser/conftest.py launches it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 900}
VISITS = ("cold", "warm", "hot")

# Runs in every document before its own scripts. Times are performance.now(): ms since
# the navigation started (the document's timeOrigin).
INIT_JS = r"""
(() => {
  if (window.top !== window) return;
  const bench = { react: [], longtasks: [] };
  window.__bench = bench;
  const now = () => performance.now();
  try {
    new PerformanceObserver((list) => {
      for (const task of list.getEntries()) bench.longtasks.push([task.startTime, task.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch (error) {
    bench.longtaskError = String(error);
  }
  // Plotly.js is a classic script in <head>: it has run once parsing is done.
  document.addEventListener("readystatechange", () => {
    if (document.readyState !== "interactive") return;
    bench.interactive = now();
    const plotly = window.Plotly;
    if (plotly && typeof plotly.react === "function") {
      const react = plotly.react;
      plotly.react = function (...args) {
        const start = now();
        const result = react.apply(this, args);
        bench.react.push([start, now(), args[0] && args[0].id]);
        return result;
      };
    }
  });
  // The first task after a frame's rendering: that frame has been painted.
  const channel = new MessageChannel();
  const pending = [];
  channel.port1.onmessage = () => {
    const t = now();
    for (const key of pending.splice(0)) bench[key] = t;
  };
  const afterPaint = (key) => {
    pending.push(key);
    channel.port2.postMessage(null);
  };
  const drawn = (chart) => Array.isArray(chart.data) && chart.data.length > 0
    && chart.querySelector(".scatterlayer .trace") !== null;
  function frame() {
    const t = now();
    const charts = [...document.querySelectorAll(".chart")];
    const count = charts.filter(drawn).length;
    if (count > 0 && bench.firstChartFrame === undefined) {
      bench.firstChartFrame = t;
      afterPaint("firstChartPainted");
    }
    if (charts.length >= 4 && count === charts.length && bench.allChartsFrame === undefined) {
      bench.allChartsFrame = t;
      afterPaint("allChartsPainted");
    }
    if (bench.rowsFrame === undefined && document.querySelectorAll("#runs tbody tr").length >= 50) {
      bench.rowsFrame = t;
      afterPaint("rowsPainted");
    }
    if (bench.allChartsFrame === undefined && bench.rowsFrame === undefined && t < 60000) {
      requestAnimationFrame(frame);
    }
  }
  requestAnimationFrame(frame);
})();
"""

COLLECT_JS = r"""
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource").map((e) => ({
    name: e.name, type: e.initiatorType, start: e.startTime, end: e.responseEnd,
    transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
  }));
  const charts = [...document.querySelectorAll(".chart")].map((chart) => ({
    id: chart.id,
    traces: (chart.data ?? []).length,
    points: (chart.data ?? []).reduce((sum, trace) => sum + (trace.x ?? []).length, 0),
  }));
  return {
    bench: { ...window.__bench },
    nav: {
      responseEnd: nav.responseEnd, domInteractive: nav.domInteractive,
      dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
      transfer: nav.transferSize, encoded: nav.encodedBodySize, decoded: nav.decodedBodySize,
    },
    resources,
    charts,
    rows: document.querySelectorAll("#runs tbody tr").length,
  };
}
"""


def chromium_version() -> str:
    """The Chromium the pages are loaded in; exits if it is missing."""
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    result = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout.strip() or "unknown version"


def load_page(context: Any, path: str, done: str, timeout_ms: float = 30_000) -> dict[str, Any]:
    """Open `path` in a new tab of `context`; wait for the init script's `done` mark."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(path, wait_until="commit", timeout=timeout_ms)
        page.wait_for_function(
            f"() => window.__bench && window.__bench.{done} !== undefined", timeout=timeout_ms
        )
        data: dict[str, Any] = page.evaluate(COLLECT_JS)
    finally:
        page.close()
    if errors:
        raise RuntimeError(f"JavaScript errors on {path}: {errors}")
    return data


def browser_loads(
    playwright: Any, base_url: str, path: str, done: str, repeats: int
) -> list[dict[str, Any]]:
    """Per repeat: Chromium on a new, empty profile, then `path` opened VISITS times, each
    in a new tab: cold (nothing cached), warm (HTTP cache), hot (HTTP and V8 code cache).

    A profile on disk, not an incognito `browser.new_context()`: Chromium keeps no V8
    code cache for incognito contexts, so their third visit is no faster than the second.
    """
    loads = []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="reglab-bench-chromium-", dir="/tmp") as profile:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                base_url=base_url,
                viewport=VIEWPORT,
            )
            try:
                context.add_init_script(INIT_JS)
                for visit in VISITS:
                    data = load_page(context, path, done)
                    data["repeat"], data["cache"] = repeat + 1, visit
                    loads.append(data)
            finally:
                context.close()
    return loads


def resource(load: dict[str, Any], pattern: str) -> dict[str, Any] | None:
    """A load's first Resource Timing entry whose URL matches `pattern`."""
    for entry in load["resources"]:
        if re.search(pattern, entry["name"]):
            return entry
    return None


def transferred(load: dict[str, Any]) -> int:
    """Bytes a load took over the network: the document and every resource."""
    return int(load["nav"]["transfer"] + sum(entry["transfer"] for entry in load["resources"]))


def plotly_eval(load: dict[str, Any]) -> float | None:
    """The long task that ran Plotly.js: the longest one before parsing ended."""
    end = load["bench"].get("interactive")
    tasks = [d for start, d in load["bench"].get("longtasks", []) if end and start < end]
    return max(tasks) if tasks else None


def pick(loads: list[dict[str, Any]], cache: str, key: str) -> list[float]:
    """One mark (ms) of every load made with that cache state."""
    return [load["bench"][key] for load in loads if load["cache"] == cache]
