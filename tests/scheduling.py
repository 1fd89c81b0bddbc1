"""How `make test` shares the tests among its pytest-xdist processes.

xdist's default (`--dist load`) hands each process a quarter of its share up front, in
collection order: one process got every fault and load test and ran on alone for a
minute and a half after the others had finished. Its `loadscope` and `loadgroup` keep a
module together but key tests by node id, and schemathesis gives its 51 operations one
node id: they ran one of the 51.

Here a process is handed one unit whenever it has less than two tests waiting (xdist
runs a test once it knows the next one), in the order of `tests/conftest.py`, the
slowest first. A unit is one test, except where tests share what is costly to start:
- every browser test (one Chromium, one shared stack of server and worker);
- the end-to-end tests on the shared stack (its worker imports TensorFlow once);
- a module with module-scoped fixtures (a lab, a worker, a server), so that it is
  started once and its tests run in their order.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from xdist.scheduler import LoadScheduling

ROOT = Path(__file__).resolve().parents[1]
# The end-to-end modules on the session's shared stack (tests/conftest.py `stack`).
ON_THE_STACK = {
    "tests/e2e/test_end_to_end.py",
    "tests/e2e/test_packed_sweep.py",
    "tests/e2e/test_sweep_e2e.py",
    "tests/e2e/test_upload_e2e.py",
}
BROWSER, STACK = "browser", "e2e on the stack"


@cache
def has_module_fixtures(path: str) -> bool:
    """Whether a test module defines a module-scoped fixture (a lab, a worker, a server)."""
    return 'scope="module"' in (ROOT / path).read_text(encoding="utf-8")


def unit_of(nodeid: str, index: int) -> object:
    """The unit a test belongs to: tests of one unit run in one process, in order."""
    path = nodeid.split("::", 1)[0]
    if PurePosixPath(path).parts[:2] == ("tests", "browser"):
        return BROWSER
    if path in ON_THE_STACK:
        return STACK
    if has_module_fixtures(path):
        return path
    return index  # a test of its own (node ids repeat: schemathesis' operations)


def rank(nodeid: str, unit: object) -> int:
    """The slowest first: the browser tests, the stack's, the other shared units and the
    system tests, the worker's training, the rest."""
    if unit == BROWSER:
        return 0
    if unit == STACK:
        return 1
    folder = PurePosixPath(nodeid.split("::", 1)[0]).parts[1]
    if isinstance(unit, str) or folder in ("e2e", "faults", "load", "scaleout"):
        return 2
    return 3 if folder == "worker" else 4


class UnitScheduling(LoadScheduling):
    """xdist's load scheduling, handing out a unit at a time (see the module's text)."""

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is not None:
            for node in self.nodes:
                self.check_schedule(node)
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = next(iter(self.node2collection.values()))
        self.pending[:] = range(len(self.collection))
        self.units = [unit_of(nodeid, index) for index, nodeid in enumerate(self.collection)]
        for node in self.nodes:
            self.check_schedule(node)

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        if node.shutting_down:
            return
        if not self.pending:
            node.shutdown()
            return
        while self.pending and len(self.node2pending[node]) < 2:
            self._send_tests(node, self._next_unit_size())

    def _next_unit_size(self) -> int:
        unit = self.units[self.pending[0]]
        size = 1
        while size < len(self.pending) and self.units[self.pending[size]] == unit:
            size += 1
        return size
