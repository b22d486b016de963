"""The projection's fast decoder agrees with the contract's decoder on every body."""

import copy
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from query_service.projected import ProjectedEvent, decode_projected, projected
from shared import codec
from shared.codec import HEADER_EVENT_TYPE, HEADER_EVENT_VERSION
from shared.errors import MalformedEventError, UnknownEventError
from tests.query_service.conftest import message_event
from tests.shared.test_events import all_fixture_events

FIXTURES = all_fixture_events()
Outcome = ProjectedEvent | type[Exception]


def contract(body: bytes, headers: dict[str, str] | None) -> Outcome:
    try:
        return projected(codec.decode_event(body, headers))
    except (UnknownEventError, MalformedEventError) as exc:
        return type(exc)


def fast(body: bytes, headers: dict[str, str] | None) -> Outcome:
    try:
        return decode_projected(body, headers)
    except (UnknownEventError, MalformedEventError) as exc:
        return type(exc)


def assert_agree(body: bytes, headers: dict[str, str] | None) -> Outcome:
    expected = contract(body, headers)
    assert fast(body, headers) == expected
    return expected


@pytest.mark.parametrize("event", FIXTURES, ids=lambda e: e.event_id)
def test_every_fixture_event(event: Any) -> None:
    body, headers = codec.encode_event(event)
    assert isinstance(assert_agree(body, headers), ProjectedEvent)
    assert_agree(body, None)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(raw: dict[str, Any]) -> None:
        node = raw
        for key in parents:
            node = node[key]
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value

    return change


_DELETE = object()
_FIELDS = [
    "type", "version", "event_id", "occurred_at", "recorded_at", "bot_id", "source", "data",
    "data.chat", "data.chat.id", "data.chat.type", "data.chat.title", "data.chat.username",
    "data.message_id", "data.thread_id", "data.sender", "data.sender.id", "data.sender.name",
    "data.sender.username", "data.sender.is_bot", "data.sent_at", "data.edited_at", "data.kind",
    "data.text", "data.reply_to_message_id", "data.entities", "data.update_kind",
    "data.business_connection_id", "data.original",
]  # fmt: skip
_VALUES: list[object] = [
    _DELETE, None, True, False, 0, 1, 1.0, 2.5, -7, 2**70, "", "1", "x", "true", "api",
    "telegram", "bot\n", "b" * 65, "bad bot", [], [1], [{}], {}, {"a": 1},
    "2025-01-01T00:00:00Z", "2025-01-01T00:00:00", "2025-01-01T00:00:00.1234567+01:00",
    "2025-02-30T00:00:00Z", "2025-01-01 00:00:00+00:00", "2025-01-01T00:00:00+24:00",
    1_700_000_000, "MessageEdited", "MessageReceived",
]  # fmt: skip


@pytest.mark.parametrize("field", _FIELDS)
def test_every_field_with_every_kind_of_value(field: str) -> None:
    tried = 0
    for event in FIXTURES[:4]:
        base = orjson.loads(codec.encode_event(event)[0])
        for value in _VALUES:
            raw = copy.deepcopy(base)
            try:
                _set(field, value)(raw)
            except (KeyError, TypeError):
                continue  # the parent is absent in this fixture
            body = json.dumps(raw).encode()  # json: orjson refuses ints past 64 bits
            for headers in (codec.event_headers(event), None):
                assert_agree(body, headers)
                tried += 1
    assert tried


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"not json", {HEADER_EVENT_TYPE: "MessageReceived", HEADER_EVENT_VERSION: "1"}),
        (b"[1]", {HEADER_EVENT_TYPE: "MessageReceived", HEADER_EVENT_VERSION: "1"}),
        (b'{"type": "MessageReceived"}', None),
        (b'{"type": "ChatArchived", "version": 1}', {HEADER_EVENT_TYPE: "ChatArchived"}),
        (b'{"type": "MessageReceived", "version": 9}', {HEADER_EVENT_TYPE: "MessageReceived",
                                                          HEADER_EVENT_VERSION: "9"}),
        (b'{"big": 1' + b"0" * 30 + b"}", {HEADER_EVENT_TYPE: "MessageReceived",
                                             HEADER_EVENT_VERSION: "1"}),
    ],
)  # fmt: skip
def test_malformed_and_unknown_bodies(body: bytes, headers: dict[str, str] | None) -> None:
    assert isinstance(assert_agree(body, headers), type)


def test_an_upcast_event_goes_through_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    event = FIXTURES[0]
    raw = orjson.loads(codec.encode_event(event)[0])
    raw["version"] = 0
    monkeypatch.setitem(codec.UPCASTERS, ("MessageReceived", 0), lambda old: {**old, "version": 1})
    headers = {HEADER_EVENT_TYPE: "MessageReceived", HEADER_EVENT_VERSION: "0"}
    assert decode_projected(orjson.dumps(raw), headers) == projected(event)


@pytest.mark.parametrize("big", [2**70, -(2**70), 2**64, -(2**63) - 1, 10**40])
def test_an_integer_beyond_64_bits_in_original_is_kept_exactly(big: int) -> None:
    event = message_event(1)
    event = event.model_copy(
        update={"data": event.data.model_copy(update={"original": {"big": big, "n": [big]}})}
    )
    body, headers = codec.encode_event(event)
    assert body.count(str(big).encode()) == 2  # the contract writes it exactly
    got = decode_projected(body, headers)
    assert got == projected(event) == contract(body, headers)
    assert got.original is not None
    assert json.loads(got.original) == {"big": big, "n": [big]}
