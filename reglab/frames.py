"""Runs and their curves as pandas DataFrames, for `ReglabClient.runs_frame` and
`ReglabClient.history_frame`.

One row per run, its columns named as the query language names its fields, so that a
column can be pasted into a filter: the attributes (`id`, `name`, `status`, `created`,
`sweep`, `dataset`, `verdict`...), `params.<path>` (each leaf of a queued run's spec, by
the path sweeps use: `params.model.layers.0.regularizer.l2`), `metrics.<name>.<summary>`
(best, last, min, max), `tags.<key>` (a bare label is "", a tag the run lacks is missing);
and beside them `config.<key>` (a script's own settings, reglab.Run's `config`) and
`test.<name>` (the test metrics). pandas is imported here only, on first use: it is an
optional extra (`pip install 'reglab[pandas]'`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

PANDAS_HINT = "pip install 'reglab[pandas]'"
# The run's attributes, as filters name them, from the API's fields.
ATTRIBUTES = {
    "id": "id",
    "name": "name",
    "status": "status",
    "created": "created_at",
    "started": "started_at",
    "finished": "finished_at",
    "sweep": "sweep_id",
    "source": "source",
    "device": "device",
    "epochs_done": "epochs_done",
    "epochs_total": "epochs_total",
    "best_epoch": "best_epoch",
    "regularization": "regularization",
    "task": "task",
    "notes": "notes",
    "error": "error",
}
# The attribute columns' order: what a person reads first, first.
ORDER = (
    "id",
    "name",
    "status",
    "created",
    "started",
    "finished",
    "sweep",
    "pack",
    "source",
    "verdict",
    "device",
    "dataset",
    "epochs_done",
    "epochs_total",
    "best_epoch",
    "regularization",
    "task",
    "notes",
    "error",
)
TIMES = ("created", "started", "finished")
COUNTS = ("id", "epochs_done", "epochs_total")  # never missing
OPTIONAL_COUNTS = ("sweep", "pack", "best_epoch")
# A queued run's spec fields that are attributes, not settings (the filter's `name` and
# the editable notes).
NOT_PARAMS = frozenset({"name", "notes"})
HISTORY_COLUMNS = ("run", "epoch", "metric", "value")


def require_pandas() -> Any:
    """The pandas module, or an ImportError that says how to install it."""
    try:
        import pandas
    except ImportError as error:
        raise ImportError(
            f"DataFrames of runs need pandas, an optional extra of reglab: {PANDAS_HINT}"
        ) from error
    return pandas


def dataset_name(run: Mapping[str, Any]) -> str | None:
    """The name a run's data goes by (the filter's `dataset`): an upload's own name, the
    built-in dataset's, or what a script said."""
    spec = run.get("spec") or {}
    dataset = spec.get("dataset") or {}
    upload = dataset.get("upload")
    if isinstance(upload, Mapping) and upload.get("name"):
        return str(upload["name"])
    if dataset.get("name"):
        return str(dataset["name"])
    script = run.get("script") or {}
    return script.get("dataset")


def _leaves(node: Any, path: str) -> Iterable[tuple[str, Any]]:
    """Each non-null scalar under `node` with its dotted path (list indexes as `.0`)."""
    if isinstance(node, Mapping):
        for key, child in node.items():
            yield from _leaves(child, f"{path}.{key}")
    elif isinstance(node, list | tuple):
        for index, child in enumerate(node):
            yield from _leaves(child, f"{path}.{index}")
    elif node is not None:
        yield path, node


def flatten_run(run: Mapping[str, Any], verdict: str | None = None) -> dict[str, Any]:
    """One run of the API as one flat row: attributes, params, config, metric
    summaries, tags and test metrics."""
    row: dict[str, Any] = {name: run.get(field) for name, field in ATTRIBUTES.items()}
    row["pack"] = (run.get("pack") or {}).get("id")
    row["dataset"] = dataset_name(run)
    row["verdict"] = verdict if verdict is not None else run.get("verdict")
    spec = run.get("spec") or {}
    for key, value in spec.items():
        if key not in NOT_PARAMS:
            row.update(_leaves(value, f"params.{key}"))
    for key, value in ((run.get("script") or {}).get("config") or {}).items():
        if value is not None:
            row[f"config.{key}"] = value
    for metric, summary in (run.get("metrics") or {}).items():
        for kind in ("best", "last", "min", "max"):
            row[f"metrics.{metric}.{kind}"] = summary.get(kind)
    for key, value in (run.get("tags") or {}).items():
        row[f"tags.{key}"] = "" if value is None else value
    for name, value in (run.get("test_metrics") or {}).items():
        row[f"test.{name}"] = value
    return row


def _column_order(columns: Iterable[str]) -> list[str]:
    """Attributes first, then params and config in the spec's order, then metrics, tags
    and test metrics sorted by name."""
    seen = list(dict.fromkeys(columns))
    settings = [c for c in seen if c.startswith("params.")]
    settings += [c for c in seen if c.startswith("config.")]
    rest = sorted(c for c in seen if c not in ORDER and c not in settings)
    families = ("metrics.", "tags.", "test.")
    ordered = [c for family in families for c in rest if c.startswith(family)]
    return [*ORDER, *settings, *ordered]


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Flat rows (flatten_run's) as CSV with runs_frame's columns, without pandas: a
    missing value is an empty cell."""
    records = list(rows)
    columns = _column_order(column for record in records for column in record)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({key: _cell(value) for key, value in record.items()})
    return out.getvalue()


def _cell(value: Any) -> Any:
    return "true" if value is True else "false" if value is False else value


def _setting_dtype(values: list[Any]) -> str | None:
    """The dtype of a params./config. column from its values: booleans, integers (nullable
    where a run lacks it), floats, or None to leave text as pandas reads it."""
    present = [value for value in values if value is not None]
    if not present:
        return "float64"
    if all(isinstance(value, bool) for value in present):
        return "boolean"
    if any(isinstance(value, bool) or not isinstance(value, int | float) for value in present):
        return None
    if all(isinstance(value, int) for value in present):
        return "int64" if len(present) == len(values) else "Int64"
    return "float64"


def runs_frame(rows: Iterable[Mapping[str, Any]]) -> Any:
    """Flat rows (flatten_run's) as a DataFrame with typed columns: times as UTC
    datetime64, counts as integers, metric summaries and test metrics as floats,
    settings by their values' kind, text as text."""
    pandas = require_pandas()
    records = list(rows)
    columns = _column_order(column for record in records for column in record)
    data = {column: [record.get(column) for record in records] for column in columns}
    frame = pandas.DataFrame(data, columns=columns)
    for column in columns:
        values = data[column]
        if column in TIMES:
            frame[column] = pandas.to_datetime(frame[column], utc=True, format="ISO8601")
        elif column in COUNTS:
            frame[column] = frame[column].astype("int64")
        elif column in OPTIONAL_COUNTS:
            frame[column] = frame[column].astype("Int64")
        elif column.startswith(("metrics.", "test.")):
            frame[column] = pandas.to_numeric(frame[column], errors="coerce").astype("float64")
        elif column.startswith(("params.", "config.")):
            dtype = _setting_dtype(values)
            if dtype is not None:
                frame[column] = frame[column].astype(dtype)
            else:
                frame[column] = frame[column].astype("string")
        else:
            frame[column] = frame[column].astype("string")
    return frame


def history_frame(series: Mapping[int, Mapping[str, Any]]) -> Any:
    """Runs' per-epoch series (run id → {epochs, series}, as /api/metrics answers) in long
    format: one row per (run, epoch, metric) with a value; missing values are left out."""
    pandas = require_pandas()
    runs: list[int] = []
    epochs: list[int] = []
    names: list[str] = []
    values: list[float] = []
    for run_id, columns in series.items():
        for name, points in sorted(columns["series"].items()):
            for epoch, value in zip(columns["epochs"], points, strict=True):
                if value is None:
                    continue
                runs.append(int(run_id))
                epochs.append(int(epoch))
                names.append(name)
                values.append(float(value))
    return pandas.DataFrame(
        {
            "run": pandas.Series(runs, dtype="int64"),
            "epoch": pandas.Series(epochs, dtype="int64"),
            "metric": pandas.Series(names, dtype="string"),
            "value": pandas.Series(values, dtype="float64"),
        },
        columns=list(HISTORY_COLUMNS),
    )
