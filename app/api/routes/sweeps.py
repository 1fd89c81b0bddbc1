"""Sweeps: a base spec, axes of settings and seeds, queued as one run per point and seed."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["sweeps"])
