"""Sweeps: expanding a base spec over axes and seeds, and pruning runs that lag the sweep."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from app.models import Experiment


def after_metrics(session: Session, row: Experiment, new_epochs: Sequence[int]) -> None:
    """Called by metrics ingest (inside its transaction, before the commit) for every run
    that received new epochs; prunes a sweep's run that lags the sweep's median."""
    return None
