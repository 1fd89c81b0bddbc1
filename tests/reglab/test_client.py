"""The REST client: tokens and the server's address from the environment (an empty value
means none), and an event stream that ends at every final status of the contract."""

from __future__ import annotations

import httpx
import pytest

from app.spec import FINAL_STATUSES
from reglab.client import ReglabClient, WorkerClient, env_token, parse_sse, server_url


def test_tokens_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGLAB_TOKEN", "  ")
    assert env_token("REGLAB_TOKEN") is None  # blank: none, as the server's settings say
    monkeypatch.setenv("REGLAB_TOKEN", "user")
    monkeypatch.setenv("REGLAB_WORKER_TOKEN", "")
    monkeypatch.setenv("REGLAB_SERVER_URL", "http://lab:9000/")
    assert server_url() == "http://lab:9000" and server_url("http://x/") == "http://x"
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(answer)
    with ReglabClient(transport=transport) as client:
        client.health()
    worker = WorkerClient(transport=transport)
    worker.heartbeat(1, "lease")
    worker.close()
    monkeypatch.setenv("REGLAB_WORKER_TOKEN", "workers")
    worker = WorkerClient("http://other:1", transport=transport)
    worker.heartbeat(1, "lease")
    worker.close()
    assert seen == [
        ("http://lab:9000/api/health", "Bearer user"),
        ("http://lab:9000/api/worker/experiments/1/heartbeat", "Bearer user"),
        ("http://other:1/api/worker/experiments/1/heartbeat", "Bearer workers"),
    ]


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_the_event_stream_ends_at_every_final_status(status: str) -> None:
    stream = (
        'id: 1\nevent: status\ndata: {"status": "running"}\n\n'
        f'id: 2\nevent: status\ndata: {{"status": "{status}"}}\n\n'
        'id: 3\nevent: metrics\ndata: {"epoch": 9}\n\n'
    )
    calls = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, text=stream, headers={"Content-Type": "text/event-stream"})

    with ReglabClient("http://lab", transport=httpx.MockTransport(answer)) as client:
        events = list(client.events(7))
    assert [event.id for event in events] == [1, 2] and len(calls) == 1


def test_parse_sse_skips_comments_and_keeps_ids() -> None:
    lines = [": ping", "", "id: 5", "event: metrics", 'data: {"epoch": 0}', "", "data: x", ""]
    events = list(parse_sse(iter(lines)))
    assert [(event.id, event.kind, event.data) for event in events] == [
        (5, "metrics", {"epoch": 0}),
        (None, "message", {"raw": "x"}),
    ]
