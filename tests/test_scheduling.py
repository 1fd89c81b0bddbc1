"""The units `make test` hands out (tests/scheduling.py): what shares a costly server or
lab stays in one process, in order; the rest goes one test at a time, the slowest first."""

from __future__ import annotations

from tests.scheduling import BROWSER, STACK, rank, unit_of


def test_what_shares_a_server_or_a_lab_is_one_unit() -> None:
    assert unit_of("tests/browser/test_dashboard.py::test_a", 0) == BROWSER
    assert unit_of("tests/browser/test_workers_page.py::test_b", 1) == BROWSER
    assert unit_of("tests/e2e/test_end_to_end.py::test_c", 2) == STACK
    # Module-scoped labs, workers and servers: the module is the unit.
    for path in ("tests/faults/test_leases.py", "tests/worker/test_gpu_worker.py"):
        assert unit_of(f"{path}::test_d", 3) == unit_of(f"{path}::test_e", 4) == path
    # schemathesis gives its operations one node id: the module keeps all of them.
    schemathesis = "tests/app/test_schemathesis.py::test_every_operation_keeps_the_contract"
    assert unit_of(schemathesis, 5) == unit_of(schemathesis, 6)


def test_other_tests_go_one_by_one_the_slowest_first() -> None:
    one, other = "tests/e2e/test_callback_script.py::test_x", "tests/app/test_api.py::test_y"
    assert unit_of(one, 7) != unit_of(one, 8)
    assert unit_of(other, 9) != unit_of(other, 10)
    ranks = [
        rank(nodeid, unit_of(nodeid, index))
        for index, nodeid in enumerate(
            [
                "tests/browser/test_dashboard.py::test_a",
                "tests/e2e/test_end_to_end.py::test_c",
                one,
                "tests/worker/test_packing.py::test_z",
                other,
            ]
        )
    ]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5
