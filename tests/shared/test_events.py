"""Event contracts: round trips, tolerant reading, versions and the JSON schema snapshot."""

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from shared import codec
from shared.codec import HEADER_EVENT_TYPE, HEADER_EVENT_VERSION, HEADER_MSG_ID
from shared.errors import MalformedEventError, UnknownEventError
from shared.events import EVENT_TYPES, MessageEdited, MessageReceived
from shared.telegram import map_update
from tests.conftest import FIXTURES

SNAPSHOTS = Path(__file__).parent / "snapshots"


def all_fixture_events() -> list[MessageReceived | MessageEdited]:
    events = []
    for path in sorted((FIXTURES / "updates").glob("*.json")):
        result = map_update("bot", json.loads(path.read_text(encoding="utf-8")))
        if isinstance(result, MessageReceived | MessageEdited):
            events.append(result)
    return events


@pytest.mark.parametrize("event", all_fixture_events(), ids=lambda e: e.event_id)
def test_round_trip(event: MessageReceived | MessageEdited) -> None:
    body, headers = codec.encode_event(event)
    assert headers == {
        HEADER_MSG_ID: event.event_id,
        HEADER_EVENT_TYPE: event.type,
        HEADER_EVENT_VERSION: "1",
    }
    assert codec.decode_event(body, headers) == event
    assert codec.decode_event(body) == event  # without headers too


def test_events_are_frozen() -> None:
    event = all_fixture_events()[0]
    with pytest.raises(ValidationError):
        event.bot_id = "other"  # type: ignore[misc]


def test_naive_datetime_is_refused() -> None:
    event = all_fixture_events()[0]
    raw = event.model_dump()
    raw["occurred_at"] = datetime(2024, 1, 1)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValidationError, match="timezone"):
        MessageReceived.model_validate(raw)


def test_tolerant_reader_ignores_unknown_fields() -> None:
    event = all_fixture_events()[0]
    raw = orjson.loads(codec.encode_event(event)[0])
    raw["added_in_a_later_release"] = 1
    raw["data"]["also_new"] = {"x": 1}
    body = orjson.dumps(raw)
    assert codec.decode_event(body, codec.event_headers(event)) == event


def test_unknown_type_is_unknown() -> None:
    body = b'{"type": "ChatArchived", "version": 1}'
    with pytest.raises(UnknownEventError):
        codec.decode_event(body, {HEADER_EVENT_TYPE: "ChatArchived", HEADER_EVENT_VERSION: "1"})


def test_newer_version_is_unknown() -> None:
    raw = orjson.loads(codec.encode_event(all_fixture_events()[0])[0])
    raw["version"] = 9
    with pytest.raises(UnknownEventError):
        codec.decode_event(orjson.dumps(raw), {HEADER_EVENT_TYPE: raw["type"],
                                               HEADER_EVENT_VERSION: "9"})  # fmt: skip


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"type": "MessageReceived"}'])
def test_malformed_body_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEventError):
        codec.decode_event(body)


def test_malformed_with_headers_names_the_field() -> None:
    event = all_fixture_events()[0]
    raw = orjson.loads(codec.encode_event(event)[0])
    del raw["data"]["chat"]
    with pytest.raises(MalformedEventError, match=r"data\.chat"):
        codec.decode_event(orjson.dumps(raw), codec.event_headers(event))


def test_upcaster_reads_an_old_version(monkeypatch: pytest.MonkeyPatch) -> None:
    event = all_fixture_events()[0]
    raw = orjson.loads(codec.encode_event(event)[0])
    # Pretend version 0 spelled the message's kind as `content`.
    raw["version"] = 0
    raw["data"]["content"] = raw["data"].pop("kind")

    def upcast(old: dict[str, Any]) -> dict[str, Any]:
        data = dict(old["data"])
        data["kind"] = data.pop("content")
        return {**old, "version": 1, "data": data}

    monkeypatch.setitem(codec.UPCASTERS, ("MessageReceived", 0), upcast)
    headers = {HEADER_EVENT_TYPE: "MessageReceived", HEADER_EVENT_VERSION: "0"}
    assert codec.decode_event(orjson.dumps(raw), headers) == event


def test_recorded_at_is_kept() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = map_update("b", json.loads((FIXTURES / "updates/message_voice.json").read_bytes()),
                       recorded_at=when)  # fmt: skip
    assert isinstance(event, MessageReceived)
    assert codec.decode_event(*codec.encode_event(event)).recorded_at == when


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_json_schema_snapshot(name: str) -> None:
    """A contract change shows up here: additive changes keep the version, breaking ones add one.

    Regenerate with CHATLOG_UPDATE_SNAPSHOTS=1 after deciding which it is.
    """
    schema = EVENT_TYPES[name].model_json_schema()
    path = SNAPSHOTS / f"{name}.schema.json"
    rendered = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("CHATLOG_UPDATE_SNAPSHOTS"):
        path.write_text(rendered, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == rendered
