"""Runs streamed from users' own training scripts (ReglabCallback), and per-batch series."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["scripts"])
