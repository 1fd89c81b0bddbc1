"""Diagnostics of regularization: verdicts from the curves and per-layer weight histograms."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["diagnostics"])
