"""Page loads in headless Chromium: the compare view of 20 runs, the runs page of 10,000.

Starts a real server (`python -m reglab.cli serve`, temp SQLite under /tmp) and fills it as
the app itself would:

* 20 runs x 100 epochs x 10 metrics through the REST API with the client package:
  `ReglabClient.submit`, then, as a worker does, `WorkerClient.claim`, `started`, the
  epochs in one `upload_metrics` (100 points; up to 1000 go in one request) and `finish`,
  each with the lease token (bench/_page_fill.py).
* Then up to 10,000 experiments in all with the app's own service functions
  (`app.services.experiments.create`, `queue.claim`, `metrics.ingest`, `queue.finish`,
  `experiments.cancel`) on a session of `app.db.make_engine` over the same SQLite file,
  while the server sits idle. Over HTTP one POST took 10-14 ms on this machine: 10,000
  would take 100-140 s before a single claim or finish; in process the whole fill takes
  ~30 s. The oldest 30% have ended (succeeded, failed or cancelled; a finished run has its
  last epoch's 10 metrics), 10 are running, the newest are queued, as after a big sweep
  was submitted.

Measured:

* `/compare?ids=<20 ids>` in Chromium (Playwright, /usr/bin/chromium, headless, the flags
  of tests/browser/conftest.py). `--repeats` times: Chromium on a new, empty profile,
  then the page opened 3 times, each in a new tab: cold (nothing cached), warm (HTTP
  cache) and hot (HTTP cache and V8's code cache, which Chromium writes on a script's
  2nd run and reads from the 3rd). An init script, run before any page script, looks at
  every animation frame for a `.chart` div whose `data` Plotly has set and whose SVG
  holds a trace; the time is `performance.now()` (ms since navigation start) in the first
  task after that frame, i.e. once it was painted. Also: all 4 charts painted, and a
  breakdown from Resource Timing, long tasks and `Plotly.react` (wrapped by the init
  script). Target: first chart <= 1 s.
* `GET /api/metrics?ids=<20 ids>` from httpx (keep-alive), `--api-repeats` times: p50,
  p95, the response's size; which requests met a full (generation 2) garbage collection
  in the server (a `sitecustomize` on the server's PYTHONPATH logs its `gc.callbacks`;
  the app is not touched); and the server's steps redone in process. Target: <= 100 ms.
* Plotly.js: served gzipped and cached (headers, a 304 on If-None-Match), and the bytes
  each visit transfers (Resource Timing `transferSize`).
* With 10,000 experiments: `GET /api/experiments?limit=50&...`, `--list-requests` times
  over a fixed mix (first pages, deep offsets, status filters, name filters), shuffled:
  p50/p95 (target p95 <= 50 ms). And `/` in Chromium until `#runs tbody tr` holds 50
  rows, cold, warm and hot as above (target <= 1 s).

The pieces: bench/_page_fill.py (the data), bench/_page_browser.py (Chromium),
bench/_page_api.py (the API, GC and in-process timings), bench/_page_report.py (tables).

    .venv/bin/python bench/page_load.py
    .venv/bin/python bench/page_load.py --repeats 5 --api-repeats 30 --list-requests 100 \
        --json bench/out/page_load.json | tee bench/out/page_load.txt
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Server, loadavg, machine
from bench._page_api import (
    as_query,
    full_gcs,
    gc_hook,
    list_breakdown,
    list_paths,
    metrics_breakdown,
    timed_gets,
)
from bench._page_browser import browser_loads, chromium_version
from bench._page_fill import (
    COMPARE_RUNS,
    EPOCHS,
    METRIC_NAMES,
    fill_compare_runs,
    fill_experiments,
)
from bench._page_report import CompareFigures, ListFigures, print_report
from reglab.client import ReglabClient


def measure_compare(
    server: Server, http: httpx.Client, playwright: Any, gc_log: Path, args: argparse.Namespace
) -> CompareFigures:
    """Fill 20 runs over the REST API, then time the compare view in Chromium and its
    `GET /api/metrics` over HTTP and in process; check how Plotly.js is served."""
    assert server.folder is not None
    began = time.perf_counter()
    ids = fill_compare_runs(server.url)
    print(
        f"filled {COMPARE_RUNS} runs x {EPOCHS} epochs x {len(METRIC_NAMES)} metrics "
        f"over the REST API in {time.perf_counter() - began:.1f} s"
    )
    wanted = ",".join(map(str, ids))

    # Plain GETs: the headers and the status of the static file are what is checked.
    found = re.search(r'src="(/vendor/plotly-[^"]+)"', http.get("/compare").text)
    if found is None:
        raise RuntimeError("no Plotly script on /compare")
    plotly_path = found.group(1)
    plotly = http.get(plotly_path, headers={"Accept-Encoding": "gzip"})
    revalidated = http.get(plotly_path, headers={"If-None-Match": plotly.headers.get("etag", "")})

    loads = browser_loads(
        playwright, server.url, f"/compare?ids={wanted}", "allChartsPainted", args.repeats
    )
    print(
        "compare charts drawn: "
        + ", ".join(
            f"{c['id']} {c['traces']} traces/{c['points']} points" for c in loads[0]["charts"]
        )
    )
    api = timed_gets(http, [f"/api/metrics?ids={wanted}"] * args.api_repeats)
    return CompareFigures(
        loads=loads,
        plotly_path=plotly_path,
        plotly=plotly,
        plotly_revalidated=revalidated.status_code,
        api_seconds=[seconds for seconds, *_ in api],
        api_gcs=full_gcs(gc_log, api),
        api_response=http.get(f"/api/metrics?ids={wanted}"),
        breakdown=metrics_breakdown(server.folder / "bench.db", ids, repeats=10),
    )


def measure_lists(
    server: Server, http: httpx.Client, playwright: Any, gc_log: Path, args: argparse.Namespace
) -> ListFigures:
    """Fill the database up to `--experiments` with the service functions, then time the
    runs page's list requests (a shuffled mix) and the page itself in Chromium."""
    assert server.folder is not None
    db_path = server.folder / "bench.db"
    more = max(0, args.experiments - COMPARE_RUNS)
    statuses, fill_seconds = fill_experiments(db_path, more)
    with ReglabClient(server.url) as client:
        total = int(client.list(limit=1)["total"])
        succeeded = int(client.list(limit=1, status="succeeded")["total"])
    print(
        f"filled {more} more experiments with the service functions in {fill_seconds:.1f} s "
        f"({fill_seconds / max(more, 1) * 1000:.1f} ms each): "
        + ", ".join(f"{k} {v}" for k, v in statuses.items())
        + f"; {total} in all"
    )
    kinds = list_paths(total, succeeded)
    rounds = math.ceil(args.list_requests / len(kinds))
    schedule = [kind for _ in range(rounds) for kind in kinds][: args.list_requests]
    random.Random(1).shuffle(schedule)
    times = timed_gets(http, [as_query(kinds[kind]) for kind in schedule])
    by_kind: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    for kind, (seconds, size, *_) in zip(schedule, times, strict=True):
        by_kind.setdefault(kind, []).append(seconds)
        sizes[kind] = size
    return ListFigures(
        total=total,
        kinds=kinds,
        by_kind=by_kind,
        sizes=sizes,
        seconds=[seconds for seconds, *_ in times],
        gcs=full_gcs(gc_log, times),
        in_process=list_breakdown(db_path, kinds, repeats=5),
        runs_loads=browser_loads(playwright, server.url, "/", "rowsPainted", args.repeats),
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="fresh browser profiles per page (default 5)"
    )
    parser.add_argument(
        "--api-repeats", type=int, default=30, help="GET /api/metrics repeats (default 30)"
    )
    parser.add_argument(
        "--list-requests", type=int, default=100, help="list requests (default 100)"
    )
    parser.add_argument(
        "--experiments", type=int, default=10_000, help="experiments in all (default 10000)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw samples here")
    args = parser.parse_args()
    if args.experiments < 50:
        parser.error("--experiments must be at least 50: the runs page is timed to 50 rows")
    return args


def main() -> None:
    args = parse_args()
    from playwright.sync_api import sync_playwright

    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}; {loadavg()}")
    print(f"browser: {chromium_version()}, headless, via Playwright")
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="reglab-bench-gc-", dir="/tmp") as hook,
        Server(env={"REGLAB_LEASE_SECONDS": "3600", **gc_hook(Path(hook))}) as server,
        # Timed GETs with a plain keep-alive client on purpose (see bench/_page_api.py).
        httpx.Client(base_url=server.url, timeout=60) as http,
        sync_playwright() as playwright,
    ):
        assert server.folder is not None
        print(f"server {server.url}, database {server.folder / 'bench.db'}")
        gc_log = Path(hook) / "gc.log"
        compare = measure_compare(server, http, playwright, gc_log, args)
        listing = measure_lists(server, http, playwright, gc_log, args)
        errors = server.error_summary()
    print(f"whole run {time.perf_counter() - started:.0f} s; at the end: {loadavg()}")
    if errors:
        print("server log, errors:")
        print(errors)
    print_report(compare, listing)
    if args.json:
        raw = {
            "compare_loads": compare.loads,
            "metrics_api_s": compare.api_seconds,
            "list_api_s": listing.by_kind,
            "runs_loads": listing.runs_loads,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1))
        print(f"raw samples: {args.json}")


if __name__ == "__main__":
    main()
