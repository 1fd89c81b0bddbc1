"""The report of bench/page_load.py: what it measured on the compare view and the runs
page, printed as per-load tables, the server's side of each API call, and the results
against the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from bench._common import fmt_ms, kib, median, percentile, print_table, verdict
from bench._page_browser import VISITS, pick, plotly_eval, resource, transferred
from bench._page_fill import COMPARE_RUNS

TARGET_FIRST_CHART_S = 1.0
TARGET_METRICS_API_S = 0.100
TARGET_LIST_P95_S = 0.050
TARGET_RUNS_PAGE_S = 1.0

Load = dict[str, Any]


@dataclass
class CompareFigures:
    """The compare view of 20 runs: its page loads, how Plotly.js was served, and
    `GET /api/metrics` over HTTP (with the server's full GCs) and in process."""

    loads: list[Load]
    plotly_path: str
    plotly: httpx.Response  # a GET with Accept-Encoding: gzip
    plotly_revalidated: int  # the status of a GET with If-None-Match
    api_seconds: list[float]
    api_gcs: list[tuple[int, float]]
    api_response: httpx.Response
    breakdown: list[list[str]]


@dataclass
class ListFigures:
    """The runs page over `total` experiments: the list requests by kind (HTTP, the
    server's full GCs, in process) and the page's loads."""

    total: int
    kinds: dict[str, dict[str, Any]]
    by_kind: dict[str, list[float]]
    sizes: dict[str, int]
    seconds: list[float]
    gcs: list[tuple[int, float]]
    in_process: dict[str, list[str]]
    runs_loads: list[Load]


def print_report(compare: CompareFigures, listing: ListFigures) -> None:
    """Every table, then the results against the targets."""
    print_compare_loads(compare.loads)
    print_plotly(compare)
    print_metrics_api(compare)
    print_lists(listing)
    print_runs_loads(listing)
    print_table(
        "Results",
        ["figure", "measured", "target", ""],
        [*compare_results(compare), *list_results(listing)],
    )


# --- small formatters ---------------------------------------------------------------------


def jms(value: float | None) -> str:
    """A page time (already in ms)."""
    return "n/a" if value is None else f"{value:.0f} ms"


def mark(entry: dict[str, Any] | None, key: str) -> float | None:
    """A resource's time (`start` or `end`, ms), None where it was not loaded."""
    return None if entry is None else float(entry[key])


def span(entry: dict[str, Any] | None) -> str:
    """A resource's fetch, start -> end (ms since navigation start)."""
    return f"{jms(mark(entry, 'start'))} -> {jms(mark(entry, 'end'))}"


def plotly_transfer(loads: list[Load], visit: str) -> float:
    """Median bytes the browser transferred for Plotly.js on that visit."""
    return median(
        [
            entry["transfer"]
            for load in loads
            if load["cache"] == visit and (entry := resource(load, r"/vendor/plotly-"))
        ]
    )


def page_transfer(loads: list[Load], visit: str) -> float:
    """Median bytes a whole page load transferred on that visit."""
    return median([transferred(load) for load in loads if load["cache"] == visit])


def gc_rows(seconds: list[float], gcs: list[tuple[int, float]]) -> list[list[str]]:
    """The requests during which the server ran a full GC, against the others."""
    with_gc = [s for s, (count, _) in zip(seconds, gcs, strict=True) if count]
    without = [s for s, (count, _) in zip(seconds, gcs, strict=True) if not count]
    pauses = [pause for count, pause in gcs if count]
    return [
        [
            "requests during which the server ran a full GC",
            f"{len(with_gc)} of {len(seconds)}",
        ],
        [
            "  those requests, median / the GC pauses in them, median",
            f"{fmt_ms(median(with_gc), 1)} / {fmt_ms(median(pauses) / 1000, 1)}",
        ],
        ["  the other requests, median", fmt_ms(median(without), 1)],
    ]


# --- the tables ---------------------------------------------------------------------------


def print_compare_loads(loads: list[Load]) -> None:
    """One row per load of the compare view: when each part arrived and ran."""
    rows = []
    for load in loads:
        bench = load["bench"]
        plotly = resource(load, r"/vendor/plotly-")
        listing = resource(load, r"/api/experiments\?")
        react = bench.get("react", [])
        rows.append(
            [
                f"{load['repeat']} {load['cache']}",
                jms(bench.get("firstChartPainted")),
                jms(bench.get("allChartsPainted")),
                jms(load["nav"]["responseEnd"]),
                jms(mark(plotly, "end")),
                jms(plotly_eval(load)),
                jms(bench.get("interactive")),
                span(resource(load, r"/api/metrics\?")),
                jms(mark(listing, "end")),
                f"{jms(react[0][0]) if react else 'n/a'} +{sum(b - a for a, b, _ in react):.0f}",
                kib(transferred(load)),
            ]
        )
    print_table(
        f"/compare?ids=<{COMPARE_RUNS} ids>, per load, ms since navigation start (each repeat: "
        "a new Chromium profile, then 3 visits in new tabs)",
        [
            "load",
            "1st chart painted",
            "4 charts painted",
            "HTML",
            "Plotly.js loaded",
            "Plotly.js run (long task)",
            "parsing done",
            "/api/metrics fetch",
            "/api/experiments",
            "Plotly.react start +total",
            "transferred",
        ],
        rows,
    )


def print_plotly(compare: CompareFigures) -> None:
    """How Plotly.js is served (compression, caching) and what each visit transferred."""
    headers = compare.plotly.headers
    wire, decoded = int(headers.get("content-length", 0)), len(compare.plotly.content)
    print_table(
        "Plotly.js served",
        ["check", "value"],
        [
            ["URL", compare.plotly_path],
            ["Content-Encoding (Accept-Encoding: gzip)", headers.get("content-encoding")],
            [
                "bytes on the wire / decoded",
                f"{kib(wire)} / {kib(decoded)}",
            ],
            ["Cache-Control", headers.get("cache-control")],
            [
                "ETag; If-None-Match answered",
                f"{headers.get('etag')}; {compare.plotly_revalidated}",
            ],
            [
                "browser transferSize of Plotly.js, cold / warm / hot (median)",
                " / ".join(kib(plotly_transfer(compare.loads, visit)) for visit in VISITS),
            ],
            [
                "whole compare page transferred, cold / warm / hot (median)",
                " / ".join(kib(page_transfer(compare.loads, visit)) for visit in VISITS),
            ],
        ],
    )


def print_metrics_api(compare: CompareFigures) -> None:
    """GET /api/metrics over HTTP, the server's full GCs, and its steps in process."""
    seconds = compare.api_seconds
    print_table(
        f"GET /api/metrics?ids=<{COMPARE_RUNS} ids>: HTTP (httpx, keep-alive), the server's "
        "full GCs, and its steps redone in process (GC off, medians of 10)",
        ["step", "time"],
        [
            [
                f"HTTP, p50 / p95 / max of {len(seconds)}",
                f"{fmt_ms(median(seconds), 1)} / {fmt_ms(percentile(seconds, 95), 1)} / "
                f"{fmt_ms(max(seconds), 1)}",
            ],
            *gc_rows(seconds, compare.api_gcs),
            *compare.breakdown,
        ],
    )


def print_lists(listing: ListFigures) -> None:
    """GET /api/experiments per kind of request, and the server's full GCs during them."""
    print_table(
        f"GET /api/experiments?limit=50 with {listing.total} experiments, per kind "
        "(HTTP; in process: list_experiments, then ExperimentOut.of + JSON)",
        ["request", "n", "p50", "max", "body", "in process: query+count", "models+JSON"],
        [
            [
                kind,
                len(listing.by_kind[kind]),
                fmt_ms(median(listing.by_kind[kind]), 1),
                fmt_ms(max(listing.by_kind[kind]), 1),
                kib(listing.sizes[kind]),
                *listing.in_process[kind],
            ]
            for kind in listing.kinds
            if kind in listing.by_kind
        ],
    )
    print_table(
        f"GET /api/experiments, all {len(listing.seconds)}: the server's full GCs",
        ["", "value"],
        gc_rows(listing.seconds, listing.gcs),
    )


def print_runs_loads(listing: ListFigures) -> None:
    """One row per load of the runs page."""
    rows = []
    for load in listing.runs_loads:
        script = resource(load, r"/static/js/runs\.js")
        rows.append(
            [
                f"{load['repeat']} {load['cache']}",
                jms(load["bench"].get("rowsPainted")),
                jms(load["nav"]["responseEnd"]),
                jms(mark(script, "end")),
                span(resource(load, r"/api/experiments\?")),
                str(load["rows"]),
                kib(transferred(load)),
            ]
        )
    print_table(
        f"/ (runs page) with {listing.total} experiments, per load, ms since navigation start",
        [
            "load",
            "50 rows painted",
            "HTML",
            "runs.js loaded",
            "/api/experiments fetch",
            "rows",
            "transferred",
        ],
        rows,
    )


# --- the results --------------------------------------------------------------------------


def page_summary(loads: list[Load], key: str, what: str, target: float) -> list[list[str]]:
    """A results row per visit: median (max) against the target (seconds)."""
    rows = []
    for visit, note in (("cold", "1st visit"), ("warm", "2nd visit"), ("hot", "3rd visit")):
        values = pick(loads, visit, key)
        rows.append(
            [
                f"{what}, {visit} ({note}), median (max)",
                f"{median(values):.0f} ms ({max(values):.0f})",
                f"<= {target * 1000:.0f} ms",
                verdict(median(values) / 1000 <= target),
            ]
        )
    return rows


def compare_results(compare: CompareFigures) -> list[list[str]]:
    """The compare view's results: charts painted, the metrics API, Plotly.js served."""
    loads, seconds, plotly = compare.loads, compare.api_seconds, compare.plotly
    evals = {
        visit: median([e for load in loads if load["cache"] == visit and (e := plotly_eval(load))])
        for visit in VISITS
    }
    gzip_ok = plotly.headers.get("content-encoding") == "gzip"
    cached_ok = "max-age" in plotly.headers.get("cache-control", "")
    api_p50, api_p95 = median(seconds), percentile(seconds, 95)
    return [
        *page_summary(loads, "firstChartPainted", "compare: 1st chart", TARGET_FIRST_CHART_S),
        [
            "compare: all 4 charts, cold / warm, median",
            f"{median(pick(loads, 'cold', 'allChartsPainted')):.0f} / "
            f"{median(pick(loads, 'warm', 'allChartsPainted')):.0f} ms",
            "",
            "",
        ],
        [
            "  of which Plotly.js run, cold / warm / hot, median",
            " / ".join(f"{evals[visit]:.0f}" for visit in VISITS) + " ms",
            "",
            "",
        ],
        [
            f"GET /api/metrics (20 runs), p50 of {len(seconds)}",
            fmt_ms(api_p50, 1),
            "<= 100 ms",
            verdict(api_p50 <= TARGET_METRICS_API_S),
        ],
        [
            f"GET /api/metrics (20 runs), p95 of {len(seconds)}",
            fmt_ms(api_p95, 1),
            "<= 100 ms",
            verdict(api_p95 <= TARGET_METRICS_API_S),
        ],
        [
            "  its response",
            f"{kib(len(compare.api_response.content))} JSON, Content-Encoding "
            f"{compare.api_response.headers.get('content-encoding', 'none')}",
            "",
            "",
        ],
        [
            "Plotly.js gzipped and cached",
            f"{kib(int(plotly.headers.get('content-length', 0)))} gzip, max-age "
            f"{'yes' if cached_ok else 'no'}, 304: {compare.plotly_revalidated == 304}",
            "gzip + cached",
            verdict(gzip_ok and cached_ok),
        ],
        [
            "compare page transferred, cold / warm, median",
            f"{kib(page_transfer(loads, 'cold'))} / {kib(page_transfer(loads, 'warm'))}",
            "",
            "",
        ],
    ]


def list_results(listing: ListFigures) -> list[list[str]]:
    """The runs page's results: the list API's p50 and p95, 50 rows painted."""
    seconds = listing.seconds
    p95 = percentile(seconds, 95)
    return [
        [
            f"GET /api/experiments ({listing.total} in DB), p50 of {len(seconds)}",
            fmt_ms(median(seconds), 1),
            "",
            "",
        ],
        [
            f"GET /api/experiments ({listing.total} in DB), p95 of {len(seconds)}",
            fmt_ms(p95, 1),
            "<= 50 ms",
            verdict(p95 <= TARGET_LIST_P95_S),
        ],
        *page_summary(listing.runs_loads, "rowsPainted", "runs page: 50 rows", TARGET_RUNS_PAGE_S),
    ]
