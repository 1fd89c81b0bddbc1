"""Uploaded datasets (CSV or NPZ): upload, list, read, delete; workers fetch the stored arrays."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["datasets"])
