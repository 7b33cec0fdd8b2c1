"""The watch stream's framing and event handling (informer.py, kubeapi.split_lines)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bgjobs_operator.informer import Gone, Informer
from bgjobs_operator.kubeapi import ApiError, split_lines
from bgjobs_operator.store import Store


def _feed(chunks: list[bytes]) -> list[bytes]:
    buffer = bytearray()
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(split_lines(buffer, chunk))
    assert buffer == b"" or b"\n" not in buffer
    return lines


def test_lines_split_across_chunks_come_out_whole() -> None:
    one = json.dumps({"type": "ADDED", "object": {"x": "ü" * 3000}}).encode()
    two = b'{"type":"MODIFIED"}'
    stream = one + b"\n" + two + b"\n"
    cuts = [0, 7, 4000, len(one), len(one) + 1, len(stream) - 1, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(cuts)]
    assert _feed(chunks) == [one, two]


def test_several_lines_in_one_chunk_and_blank_lines_skipped() -> None:
    assert _feed([b'{"a":1}\n\n{"b":2}\n{"c"', b":3}\n"]) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_an_unfinished_line_waits_for_its_end() -> None:
    buffer = bytearray()
    assert list(split_lines(buffer, b'{"a":')) == []
    assert buffer == b'{"a":'
    assert list(split_lines(buffer, b"1}\n")) == [b'{"a":1}']


def _informer(events: list[dict[str, Any]]) -> Informer:
    return Informer(None, "Job", "n", Store(), events.append)  # type: ignore[arg-type]


def test_events_reach_the_handler_and_bookmarks_only_move_the_version() -> None:
    events: list[dict[str, Any]] = []
    inf = _informer(events)
    added = {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}}
    version = inf._handle(json.dumps(added).encode(), "1")
    assert version == "5" and [e["type"] for e in events] == ["ADDED"]
    assert events[0]["object"]["kind"] == "Job"
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    assert inf._handle(json.dumps(bookmark).encode(), version) == "9"
    assert len(events) == 1


def test_an_expired_version_means_list_again_and_other_errors_raise() -> None:
    inf = _informer([])
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    with pytest.raises(Gone):
        inf._handle(json.dumps(gone).encode(), "1")
    other = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "boom"}}
    with pytest.raises(ApiError, match="boom"):
        inf._handle(json.dumps(other).encode(), "1")


def test_a_handler_that_fails_on_one_object_does_not_stop_the_next() -> None:
    seen: list[str] = []

    def handler(event: Any) -> None:
        if event["object"]["metadata"]["name"] == "bad":
            raise KeyError("a bug")
        seen.append(event["object"]["metadata"]["name"])

    inf = Informer(None, "Job", "n", Store(), handler)  # type: ignore[arg-type]
    for name in ("bad", "good"):
        event = {"type": "ADDED", "object": {"metadata": {"name": name, "resourceVersion": "2"}}}
        inf._handle(json.dumps(event).encode(), "1")
    assert seen == ["good"]


class FakeApi:
    """Lists from a dict; each watch plays the next script of lines, then ends."""

    def __init__(self, scripts: list[list[dict[str, Any]]]) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.scripts = scripts
        self.lists = 0
        self.watched_from: list[str] = []

    @staticmethod
    def path(kind: str, namespace: str | None) -> str:
        return f"/{kind}/{namespace}"

    async def request(self, method: str, path: str, params: Any = None) -> dict[str, Any]:
        self.lists += 1
        return {"items": list(self.objects.values()), "metadata": {"resourceVersion": "10"}}

    @contextlib.asynccontextmanager
    async def stream(self, path: str, params: dict[str, str]) -> AsyncIterator[Any]:
        self.watched_from.append(params["resourceVersion"])
        script = self.scripts.pop(0) if self.scripts else None

        async def lines() -> AsyncIterator[bytes]:
            if script is None:
                await asyncio.sleep(3600)
            for event in script or []:
                yield json.dumps(event).encode()

        yield lines()


def _obj(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "n", "uid": name, "resourceVersion": version}}


def test_an_expired_watch_lists_again_and_a_finished_one_resumes_where_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "bgjobs_operator.informer")
    api = FakeApi(
        [
            [{"type": "ADDED", "object": _obj("b", "11")}],  # ends: resume from 11
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410}}],  # expired
        ]
    )
    api.objects["a"] = _obj("a", "3")
    store = Store()
    events: list[tuple[Any, str]] = []

    def handler(event: Any) -> None:
        events.append((event["type"], event["object"]["metadata"]["name"]))
        store.put(event["object"])

    async def main() -> None:
        inf = Informer(api, "Job", "n", store, handler)  # type: ignore[arg-type]
        task = asyncio.create_task(inf.run())
        for _ in range(200):
            if api.lists >= 2 and len(api.watched_from) >= 3:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert api.watched_from[:3] == ["10", "11", "10"]  # list, watch, resume, 410, list, watch
    assert api.lists == 2
    assert events[:2] == [(None, "a"), ("ADDED", "b")]
    messages = [r.getMessage() for r in caplog.records]
    assert any("history compacted, listing again" in m for m in messages)
    assert not any("failed" in m for m in messages)  # not the error path


def test_a_deleted_object_is_not_brought_back_by_a_late_copy() -> None:
    """A write's response that arrives after the object's DELETED event must not put a
    ghost into the store (it would be reconciled, and its Job made again)."""
    store = Store()
    obj = _obj("a", "5")
    store.put(obj)
    store.remove(obj)
    store.put(_obj("a", "6"))  # same uid: the late response of a write
    assert store.get(("n", "a")) is None
    fresh = _obj("a", "7")
    fresh["metadata"]["uid"] = "another"  # a new object of the same name
    store.put(fresh)
    assert store.get(("n", "a")) is not None


def test_a_listing_does_not_judge_what_is_newer_than_itself() -> None:
    api = FakeApi([])
    store = Store()
    store.put(_obj("mine", "42"))  # our create's response, after the listing's version 10
    store.put(_obj("old", "5"))  # deleted while nobody watched
    deleted: list[str] = []

    def handler(event: Any) -> None:
        if event["type"] == "DELETED":
            deleted.append(event["object"]["metadata"]["name"])

    inf = Informer(api, "Job", "n", store, handler)  # type: ignore[arg-type]
    asyncio.run(inf._list())
    assert deleted == ["old"]
