"""The front end's few facts of the spec that the served schema does not carry, tied to
app/spec by reading the JavaScript: the run statuses (static/js/status.js, the one list
the pages read), the default strength of a regularizer, and the naming rule by which the
form finds the strengths a regularizer kind reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

from app.spec import _KIND_FIELDS, DEFAULT_STRENGTH, FINAL_STATUSES, RegularizerSpec, Status

JS = Path(__file__).resolve().parents[1] / "static" / "js"
STATUS_JS = JS / "status.js"


def js_array(source: str, pattern: str) -> list[str]:
    """The string array literal that `pattern` (with one group around the items) finds."""
    match = re.search(pattern, source, re.S)
    assert match is not None, f"{pattern!r} not found"
    items = json.loads(f"[{match.group(1)}]")
    assert all(isinstance(item, str) for item in items)
    return items


def test_status_js_lists_the_servers_statuses_in_order() -> None:
    source = STATUS_JS.read_text(encoding="utf-8")
    statuses = js_array(source, r"export const STATUSES = \[(.*?)\];")
    assert statuses == [status.value for status in Status]


def test_status_js_final_statuses_are_the_servers() -> None:
    source = STATUS_JS.read_text(encoding="utf-8")
    final = js_array(source, r"export const FINAL_STATUSES = new Set\(\[(.*?)\]\);")
    assert len(final) == len(set(final))
    assert set(final) == {status.value for status in FINAL_STATUSES}


def test_no_other_module_writes_the_final_statuses_out() -> None:
    """A page that needs to know whether a run is over asks status.js."""
    final = sorted(status.value for status in FINAL_STATUSES)
    copies = []
    for path in sorted(JS.rglob("*.js")):
        if path == STATUS_JS:
            continue
        source = path.read_text(encoding="utf-8")
        if all(re.search(rf"[\"'`]{name}[\"'`]", source) for name in final):
            copies.append(path.relative_to(JS).as_posix())
    assert copies == []


def test_the_form_default_strength_is_the_specs() -> None:
    source = (JS / "form" / "regularizer.js").read_text(encoding="utf-8")
    match = re.search(r"export const DEFAULT_STRENGTH = ([0-9.eE+-]+);", source)
    assert match is not None
    assert float(match.group(1)) == DEFAULT_STRENGTH


def test_each_kind_reads_the_strengths_named_in_it() -> None:
    """static/js/form/rules.js finds a kind's strengths as the numeric fields of
    RegularizerSpec whose names occur in the kind's name ("l1l2" reads l1 and l2)."""
    properties = RegularizerSpec.model_json_schema()["properties"]

    def numeric(node: dict[str, object]) -> bool:
        branches = node.get("anyOf", [node])
        assert isinstance(branches, list)
        return any(branch.get("type") == "number" for branch in branches)

    strengths = [name for name, node in properties.items() if numeric(node)]
    assert strengths == ["l1", "l2", "smoothness"]
    kinds = properties["kind"]["enum"]
    assert set(kinds) == set(_KIND_FIELDS)
    for kind in kinds:
        assert tuple(name for name in strengths if name in kind) == _KIND_FIELDS[kind], kind
