"""Which runs are seed repeats of one configuration."""

from __future__ import annotations

import hashlib
import json

from app.spec import ExperimentSpec


def group_key(spec: ExperimentSpec) -> str:
    """The same for specs that differ only in name, notes and seed: seed repeats of one
    configuration, which the compare and sweep views draw as a mean and a band."""
    data = spec.model_dump(mode="json", exclude={"name": True, "notes": True})
    data["training"].pop("seed", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
