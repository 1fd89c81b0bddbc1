"""The dashboard's pages (static HTML) and Plotly.js from the installed plotly package.

Plotly.js is 4.8 MB: it is served gzipped from memory under a URL that carries its
version, cached for a year, so a second visit downloads nothing large.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)
STATIC_DIR = Path(__file__).resolve().parents[3] / "static"
PAGES = {
    "runs": "index.html",
    "new": "new.html",
    "run": "run.html",
    "compare": "compare.html",
    "sweeps": "sweeps.html",
    "sweep": "sweep.html",
    "workers": "workers.html",
}


@cache
def plotly_version() -> str:
    from plotly.offline import get_plotlyjs_version

    return str(get_plotlyjs_version())


@cache
def _plotly_bytes() -> tuple[bytes, bytes]:
    raw = files("plotly").joinpath("package_data/plotly.min.js").read_bytes()
    return raw, gzip.compress(raw, compresslevel=6, mtime=0)


def plotly_url() -> str:
    return f"/vendor/plotly-{plotly_version()}.min.js"


def _page(name: str) -> str:
    html = (STATIC_DIR / PAGES[name]).read_text(encoding="utf-8")
    return html.replace("__PLOTLY_URL__", plotly_url())


def _html(name: str) -> HTMLResponse:
    return HTMLResponse(_page(name), headers={"Cache-Control": "no-cache"})


@router.get("/")
def runs_page() -> HTMLResponse:
    return _html("runs")


@router.get("/new")
def new_page() -> HTMLResponse:
    return _html("new")


@router.get("/runs/{experiment_id}")
def run_page(experiment_id: int) -> HTMLResponse:
    return _html("run")


@router.get("/compare")
def compare_page() -> HTMLResponse:
    return _html("compare")


@router.get("/sweeps")
def sweeps_page() -> HTMLResponse:
    return _html("sweeps")


@router.get("/sweeps/{sweep_id}")
def sweep_page(sweep_id: int) -> HTMLResponse:
    return _html("sweep")


@router.get("/workers")
def workers_page() -> HTMLResponse:
    return _html("workers")


@router.get("/vendor/plotly-{version}.min.js")
def plotly_js(version: str, request: Request) -> Response:
    if version != plotly_version():
        raise HTTPException(404, detail="no such plotly.js version")
    raw, compressed = _plotly_bytes()
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable",
        "Vary": "Accept-Encoding",
        "ETag": f'"plotly-{version}"',
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(compressed, media_type="text/javascript", headers=headers)
    return Response(raw, media_type="text/javascript", headers=headers)
