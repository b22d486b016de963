"""The stream definition against a real NATS server: ensure, refuse, and a full round trip."""

import dataclasses
import json
from datetime import timedelta

import pytest
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from shared import codec
from shared.codec import HEADER_EVENT_TYPE, HEADER_MSG_ID
from shared.config import ChatlogSettings
from shared.errors import StreamConfigError
from shared.events import MessageReceived
from shared.stream import MAX_EVENT_BYTES, ensure_stream
from shared.subjects import event_subject
from shared.telegram import map_update
from tests.conftest import FIXTURES

pytestmark = pytest.mark.asyncio


def fixture_event(name: str) -> MessageReceived:
    event = map_update("bot_1", json.loads((FIXTURES / f"updates/{name}.json").read_bytes()))
    assert isinstance(event, MessageReceived)
    return event


async def test_creates_stream_with_our_config(
    js: JetStreamContext, settings: ChatlogSettings
) -> None:
    info = await ensure_stream(js, settings)
    config = info.config
    assert config.name == settings.stream
    assert config.subjects == [f"{settings.subject_prefix}.>"]
    assert config.storage == StorageType.FILE
    assert config.retention == RetentionPolicy.LIMITS
    assert config.max_age == 0
    assert config.duplicate_window == 120
    assert config.max_msg_size == MAX_EVENT_BYTES
    assert config.num_replicas == 1


async def test_is_idempotent(js: JetStreamContext, settings: ChatlogSettings) -> None:
    first = await ensure_stream(js, settings)
    second = await ensure_stream(js, settings)
    assert first.config == second.config


async def test_updates_a_changed_setting(js: JetStreamContext, settings: ChatlogSettings) -> None:
    await ensure_stream(js, settings)
    changed = settings.model_copy(update={"stream_duplicate_window": timedelta(seconds=30)})
    info = await ensure_stream(js, changed)
    assert info.config.duplicate_window == 30


async def test_adds_our_subjects_to_an_existing_stream(
    js: JetStreamContext, settings: ChatlogSettings
) -> None:
    other = f"{settings.subject_prefix}-other.>"
    await js.add_stream(config=StreamConfig(name=settings.stream, subjects=[other],
                                            storage=StorageType.FILE))  # fmt: skip
    info = await ensure_stream(js, settings)
    assert info.config.subjects == [other, f"{settings.subject_prefix}.>"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"retention": RetentionPolicy.WORK_QUEUE}, "retention"),
        ({"storage": StorageType.MEMORY}, "storage"),
    ],
)
async def test_refuses_incompatible_stream(
    js: JetStreamContext, settings: ChatlogSettings, change: dict[str, object], message: str
) -> None:
    from shared.stream import stream_config  # noqa: PLC0415

    await js.add_stream(config=dataclasses.replace(stream_config(settings), **change))
    with pytest.raises(StreamConfigError, match=message) as info:
        await ensure_stream(js, settings)
    assert settings.stream in str(info.value)


async def test_event_round_trip_through_the_stream(
    js: JetStreamContext, settings: ChatlogSettings
) -> None:
    await ensure_stream(js, settings)
    names = [
        "message_text_4096",
        "message_text_cyrillic_emoji",
        "message_text_emoji_utf16_entities",
        "message_text_rtl_mixed",
        "message_location",
    ]
    events = [fixture_event(name) for name in names]
    assert len(events[0].data.text or "") == 4096
    assert any(ord(ch) > 0xFFFF for ch in events[1].data.text or "")  # non-BMP
    for event in events:
        body, headers = codec.encode_event(event)
        subject = event_subject(
            settings.subject_prefix, event.bot_id, event.data.chat.id, event.type
        )
        ack = await js.publish(subject, body, headers=headers, stream=settings.stream)
        assert not ack.duplicate
    for seq, event in enumerate(events, start=1):
        stored = await js.get_msg(settings.stream, seq)
        assert stored.headers is not None
        assert stored.headers[HEADER_MSG_ID] == event.event_id
        assert stored.headers[HEADER_EVENT_TYPE] == "MessageReceived"
        assert (
            stored.subject
            == f"{settings.subject_prefix}.bot_1.{event.data.chat.id}.MessageReceived"
        )
        decoded = codec.decode_event(stored.data or b"", stored.headers)
        assert decoded == event
        original = json.loads((FIXTURES / f"updates/{names[seq - 1]}.json").read_bytes())
        assert decoded.data.original == original


async def test_negative_chat_id_subject(js: JetStreamContext, settings: ChatlogSettings) -> None:
    await ensure_stream(js, settings)
    event = fixture_event("message_group_text")
    assert event.data.chat.id < 0
    body, headers = codec.encode_event(event)
    subject = event_subject(settings.subject_prefix, event.bot_id, event.data.chat.id, event.type)
    ack = await js.publish(subject, body, headers=headers)
    assert ack.stream == settings.stream


async def test_duplicate_publish_is_dropped(
    js: JetStreamContext, settings: ChatlogSettings
) -> None:
    await ensure_stream(js, settings)
    event = fixture_event("message_private_text")
    body, headers = codec.encode_event(event)
    subject = event_subject(settings.subject_prefix, event.bot_id, event.data.chat.id, event.type)
    first = await js.publish(subject, body, headers=headers)
    again = await js.publish(subject, body, headers=headers)
    assert (bool(first.duplicate), bool(again.duplicate)) == (False, True)
    assert again.seq == first.seq
    info = await js.stream_info(settings.stream)
    assert info.state.messages == 1
