"""Reading an uploaded CSV or NPZ file into plain arrays, refusing anything else.

The server never unpickles, evaluates or imports user data: a CSV is parsed cell by cell
as numbers (the target column may hold class names), and an NPZ is opened with
`allow_pickle=False` after its members' uncompressed sizes are checked, so that neither
an object array nor a zip bomb gets through. What is stored is a fresh NPZ that the
server writes itself: `x` float32 and `y` int32 class ids or float32 values.
"""

from __future__ import annotations

import csv
import itertools
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Format = Literal["csv", "npz"]
TaskName = Literal["classification", "regression"]

MIN_SAMPLES = 10  # enough for a test, a validation and a training split
MAX_SAMPLES = 1_000_000
MAX_FEATURES = 100_000
MAX_CLASSES = 1_000
# A numeric target with at most this many distinct integer values is read as class ids.
MAX_INFERRED_CLASSES = 20
# An NPZ may expand this many times its upload limit when unzipped, and no more.
NPZ_EXPANSION = 8


class UploadError(ValueError):
    """The file cannot be used; `field` is where the problem lies ("body" or a query name)."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Parsed:
    x: np.ndarray  # float32, (n, features) or (n, height, width, channels)
    y: np.ndarray  # int32 class ids or float32 values, (n,)
    task: TaskName
    class_names: list[str] | None

    @property
    def samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def features(self) -> int:
        return int(np.prod(self.x.shape[1:]))

    @property
    def image(self) -> list[int] | None:
        return [int(size) for size in self.x.shape[1:]] if self.x.ndim == 4 else None

    @property
    def classes(self) -> int:
        return len(self.class_names) if self.class_names is not None else 0


def sniff_format(head: bytes) -> Format:
    """An NPZ is a zip archive; anything else is read as CSV."""
    return "npz" if head.startswith(b"PK\x03\x04") else "csv"


def parse(
    path: Path,
    fmt: Format,
    *,
    target: str | None = None,
    task: TaskName | None = None,
    max_bytes: int,
) -> Parsed:
    """Read and check an uploaded file; raise UploadError saying what is wrong."""
    raw_y: list[str] | np.ndarray
    if fmt == "npz":
        if target is not None:
            raise UploadError(
                "'target' applies to CSV files (an NPZ names its arrays x and y)", "target"
            )
        x, raw_y = _read_npz(path, max_bytes * NPZ_EXPANSION)
    else:
        x, raw_y = _read_csv(path, target)
    y, inferred, class_names = _labels(raw_y, task)
    if len(x) < MIN_SAMPLES:
        raise UploadError(f"{len(x)} samples: at least {MIN_SAMPLES} are needed")
    return Parsed(x=x, y=y, task=inferred, class_names=class_names)


def save(parsed: Parsed, path: Path) -> None:
    """Write the checked arrays as the NPZ that workers download."""
    with path.open("wb") as handle:
        np.savez(handle, x=parsed.x, y=parsed.y)


def _read_csv(path: Path, target: str | None) -> tuple[np.ndarray, list[str]]:
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        try:
            return _csv_rows(csv.reader(handle), target)
        except UnicodeDecodeError as error:
            raise UploadError(f"not a UTF-8 text file (byte {error.start})") from None
        except csv.Error as error:
            raise UploadError(f"not a readable CSV file: {error}") from None


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _csv_rows(rows: Iterator[list[str]], target: str | None) -> tuple[np.ndarray, list[str]]:
    first = next(rows, None)
    while first is not None and not any(cell.strip() for cell in first):
        first = next(rows, None)  # skip blank lines before the header
    if first is None:
        raise UploadError("the file is empty")
    cells = [cell.strip() for cell in first]
    if "\x00" in "".join(cells):
        raise UploadError("line 1: NUL byte in the header")
    has_header = not all(_is_number(cell) for cell in cells)
    names = cells if has_header else [f"column {index + 1}" for index in range(len(cells))]
    if len(names) < 2:
        raise UploadError("a CSV needs at least two columns: features and a target")
    if len(names) > MAX_FEATURES + 1:
        raise UploadError(f"{len(names) - 1} feature columns: at most {MAX_FEATURES}")
    if has_header and (len(set(names)) != len(names) or "" in names):
        raise UploadError("line 1: every column needs a name of its own")
    if target is None:
        target_index = len(names) - 1
    elif target in names:
        target_index = names.index(target)
    else:
        shown = ", ".join(repr(name) for name in names[:20])
        raise UploadError(f"no column named {target!r}; the columns are {shown}", "target")
    feature_names = [name for index, name in enumerate(names) if index != target_index]

    features: list[list[float]] = []
    labels: list[str] = []
    first_data = [] if has_header else [(1, first)]
    for number, row in itertools.chain(first_data, enumerate(rows, start=2)):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(names):
            raise UploadError(f"line {number}: {len(row)} values, the header has {len(names)}")
        values: list[float] = []
        for index, cell in enumerate(row):
            if index == target_index:
                label = cell.strip()
                if not label or "\x00" in label or len(label) > 200:
                    raise UploadError(
                        f"line {number}: the target {names[index]!r} is empty or not a usable label"
                    )
                labels.append(label)
                continue
            try:
                value = float(cell)
            except ValueError:
                column = feature_names[len(values)]
                raise UploadError(
                    f"line {number}, column {column!r}: {cell.strip()[:40]!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise UploadError(
                    f"line {number}, column {names[index]!r}: {cell.strip()!r} "
                    "is not a finite number"
                )
            values.append(value)
        features.append(values)
        if len(features) > MAX_SAMPLES:
            raise UploadError(f"more than {MAX_SAMPLES} rows")
    if not features:
        raise UploadError("the file has a header but no rows")
    return np.asarray(features, dtype=np.float32), labels


def _read_npz(path: Path, max_unzipped: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            total = sum(member.file_size for member in members)
            if total > max_unzipped:
                raise UploadError(f"the NPZ unzips to {total} bytes: at most {max_unzipped}")
            stored = {member.filename for member in members}
    except zipfile.BadZipFile:
        raise UploadError("not a valid NPZ (zip) file") from None
    x_name = next((name for name in ("x", "X") if f"{name}.npy" in stored), None)
    y_name = next((name for name in ("y", "Y") if f"{name}.npy" in stored), None)
    if x_name is None or y_name is None:
        found = ", ".join(sorted(name.removesuffix(".npy") for name in stored)) or "none"
        raise UploadError(f"an NPZ needs arrays named x and y (found: {found})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            x = archive[x_name]
            y = archive[y_name]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise UploadError("object arrays (pickled data) are refused; store numbers") from None
        raise UploadError(f"unreadable array: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise UploadError(f"unreadable NPZ: {error}") from None

    if x.dtype.kind not in "biuf":
        raise UploadError(f"x holds {x.dtype}: it must hold numbers")
    if x.ndim == 3:
        x = x[..., np.newaxis]  # (n, height, width): one channel
    if x.ndim not in (2, 4):
        raise UploadError(
            f"x has shape {x.shape}: use (samples, features), (samples, height, width) "
            "or (samples, height, width, channels)"
        )
    if x.ndim == 4 and not (x.shape[1] >= 3 and x.shape[2] >= 3 and 1 <= x.shape[3] <= 4):
        raise UploadError(f"x has shape {x.shape}: images need at least 3 x 3 pixels, 1-4 channels")
    if x.shape[0] > MAX_SAMPLES:
        raise UploadError(f"{x.shape[0]} samples: at most {MAX_SAMPLES}")
    features = int(np.prod(x.shape[1:]))
    if not 1 <= features <= MAX_FEATURES:
        raise UploadError(f"{features} features per sample: 1 to {MAX_FEATURES}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise UploadError(f"y has shape {y.shape}: it must be one label per sample ({len(x)},)")
    if y.dtype.kind not in "biufU":
        raise UploadError(f"y holds {y.dtype}: it must hold numbers or class names")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UploadError("x holds NaN or infinite values")
    return x, y


def _labels(
    raw: list[str] | np.ndarray, task: TaskName | None
) -> tuple[np.ndarray, TaskName, list[str] | None]:
    """Class ids (with their names) or regression values, the task inferred if not given."""
    array = np.asarray(raw)
    numeric: np.ndarray | None
    if array.dtype.kind in "biuf":
        numeric = array.astype(np.float64)
    else:
        try:
            numeric = np.asarray([float(value) for value in array], dtype=np.float64)
        except ValueError:
            numeric = None
    if numeric is not None and not np.isfinite(numeric).all():
        raise UploadError("the target holds NaN or infinite values")

    if task is None:
        if numeric is None:
            task = "classification"
        else:
            integral = bool(np.all(numeric == np.round(numeric)))
            distinct = len(np.unique(numeric))
            task = (
                "classification"
                if integral and 2 <= distinct <= MAX_INFERRED_CLASSES
                else "regression"
            )
    if task == "regression":
        if numeric is None:
            raise UploadError("a regression target must be numbers", "task")
        return numeric.astype(np.float32), task, None

    if numeric is not None:
        values, ids = np.unique(numeric, return_inverse=True)
        names = [f"{value:g}" for value in values]
    else:
        text_values, ids = np.unique(array.astype(str), return_inverse=True)
        names = [str(value) for value in text_values]
    if len(names) < 2:
        raise UploadError("the target has one class only: a classifier needs two or more")
    if len(names) > MAX_CLASSES:
        raise UploadError(f"the target has {len(names)} classes: at most {MAX_CLASSES}", "task")
    return ids.astype(np.int32), task, names
