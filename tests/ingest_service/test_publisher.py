"""The publisher's own JetStream request on a real server: acks matched, failures refused."""

import asyncio
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ingest_service.publisher import EventPublisher, PublishFailedError
from shared.config import ChatlogSettings
from shared.events import ChatInfo, EventSource, MessageData, MessageReceived
from shared.stream import ensure_stream

pytestmark = pytest.mark.asyncio


def message(n: int, chat: int = -100) -> MessageReceived:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return MessageReceived(
        event_id=f"test:{n}",
        occurred_at=when,
        recorded_at=when,
        bot_id="bot_1",
        source=EventSource.API,
        data=MessageData(
            chat=ChatInfo(id=chat, type="group"),
            message_id=n,
            sent_at=when,
            kind="text",
            text=f"m{n}",
        ),
    )


async def publisher_for(
    nc: NatsClient, settings: ChatlogSettings, *, stream: str | None = None, timeout: float = 1
) -> EventPublisher:
    publisher = EventPublisher(
        nc,
        stream=stream or settings.stream,
        subject_prefix=settings.subject_prefix,
        timeout=timeout,
    )
    await publisher.start()
    return publisher


async def test_concurrent_publishes_each_get_their_own_ack(
    nats_client: NatsClient, js: JetStreamContext, settings: ChatlogSettings
) -> None:
    await ensure_stream(js, settings)
    publisher = await publisher_for(nats_client, settings)
    published = await asyncio.gather(*(publisher.publish(message(n, -n % 7)) for n in range(300)))
    assert sorted(p.seq for p in published) == list(range(1, 301))
    for p in published[::17]:
        stored = await js.get_msg(settings.stream, p.seq)
        assert stored.headers is not None
        assert stored.headers["Nats-Msg-Id"] == p.event_id
    again = await asyncio.gather(*(publisher.publish(message(n, -n % 7)) for n in range(0, 300, 7)))
    assert all(a.duplicate for a in again)
    assert [a.seq for a in again] == [published[n].seq for n in range(0, 300, 7)]
    assert not publisher._waiting  # no future left behind


async def test_stream_refusing_the_event_is_a_failure(
    nats_client: NatsClient, js: JetStreamContext, settings: ChatlogSettings
) -> None:
    """Another stream name than the one that stores the subject: JetStream answers an error."""
    await ensure_stream(js, settings)
    publisher = await publisher_for(nats_client, settings, stream="SOME_OTHER_STREAM")
    with pytest.raises(PublishFailedError, match="refused"):
        await publisher.publish(message(1))
    assert (await js.stream_info(settings.stream)).state.messages == 0


async def test_no_stream_is_a_failure(nats_client: NatsClient, settings: ChatlogSettings) -> None:
    publisher = await publisher_for(nats_client, settings, timeout=5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(PublishFailedError, match="no responders"):
        await publisher.publish(message(1))
    assert asyncio.get_running_loop().time() - started < 1  # answered, not timed out


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (None, "no acknowledgement within"),
        (b'{"stream": "IMPOSTOR", "seq": 7}', "not ours"),
        (b"not json", "unreadable"),
        (b'{"seq": "x"}', "unreadable"),
    ],
)
async def test_a_missing_or_wrong_answer_is_a_failure(
    nats_client: NatsClient, settings: ChatlogSettings, reply: bytes | None, error: str
) -> None:
    """Something other than the stream answers on the subject (or nothing does)."""

    async def impostor(msg: Msg) -> None:
        if reply is not None:
            await msg.respond(reply)

    await nats_client.subscribe(f"{settings.subject_prefix}.>", cb=impostor)
    publisher = await publisher_for(nats_client, settings, timeout=0.3)
    with pytest.raises(PublishFailedError, match=error):
        await publisher.publish(message(1))
    assert not publisher._waiting
