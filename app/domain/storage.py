"""Where the server keeps files. Paths are chosen here, never taken from a request."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from app.errors import TooLarge
from app.settings import Settings


def model_relpath(experiment_id: int) -> str:
    """Where a run's trained model lives under the data folder."""
    return f"artifacts/{int(experiment_id)}/model.keras"


def dataset_relpath(token: str) -> str:
    """Where a stored upload lives under the data folder; `token` is chosen by the server."""
    if not token.isalnum():
        raise ValueError("a storage token is letters and digits only")
    return f"datasets/{token}.npz"


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


@dataclass(frozen=True)
class Received:
    """What was written: its size, its SHA-256 and its first bytes (to tell formats)."""

    size: int
    sha256: str
    head: bytes


async def receive(body: AsyncIterator[bytes], path: Path, *, limit: int, what: str) -> Received:
    """Write a streamed body to `path`, refusing it (TooLarge) as soon as it passes `limit`
    bytes, so that a large body is never held whole. The caller removes the file."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    with path.open("wb") as handle:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"{what} larger than {limit} bytes")
            if len(head) < 8:
                head += chunk[:8]
            digest.update(chunk)
            handle.write(chunk)
    return Received(size=size, sha256=digest.hexdigest(), head=head)
