"""Where the server keeps files. Paths are chosen here, never taken from a request."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.settings import Settings


def model_relpath(experiment_id: int) -> str:
    return f"artifacts/{int(experiment_id)}/model.keras"


def resolve_artifact(settings: Settings, relpath: str) -> Path | None:
    """The absolute path of a stored file, or None unless it lies inside the data folder
    (after `..` and symbolic links are resolved; the folder itself is not a file in it)."""
    root = settings.data_dir.resolve()
    try:
        path = (root / relpath).resolve()
    except (OSError, RuntimeError, ValueError):  # a NUL byte, a symbolic-link loop
        return None
    return path if path.is_relative_to(root) and path != root else None


def remove_artifacts(settings: Settings, experiment_id: int) -> None:
    """Delete a run's stored files, if any."""
    folder = resolve_artifact(settings, f"artifacts/{int(experiment_id)}")
    if folder is not None and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
