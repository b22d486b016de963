"""The projector against real NATS and PostgreSQL: apply, dedupe, park, count, checkpoint."""

from datetime import timedelta

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from query_service.config import QuerySettings
from query_service.projector import PIPELINE_CHUNK, Projector, StreamEvent
from query_service.pull_inbox import ack_fields
from shared.codec import HEADER_EVENT_TYPE, HEADER_EVENT_VERSION, HEADER_MSG_ID, encode_event
from shared.subjects import event_subject
from tests.query_service.conftest import (
    BOT,
    CHAT,
    T0,
    checkpoint,
    fixture_event,
    message_event,
    publish,
    publish_many,
    running_projector,
    wait_for_checkpoint,
)

pytestmark = pytest.mark.asyncio


class TestProjection:
    async def test_fixture_updates_become_rows(
        self,
        js: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
    ) -> None:
        names = ["message_private_text", "message_group_text", "message_photo_caption",
                 "channel_post", "edited_message"]  # fmt: skip
        events = [fixture_event(name) for name in names]
        async with running_projector(nats_client, query_settings):
            last = 0
            for event in events:
                last = (await publish(js, query_settings, event)).seq
            await wait_for_checkpoint(pg, last)
        rows = await pg.fetch("SELECT * FROM messages")
        assert len(rows) == len({(e.data.chat.id, e.data.message_id) for e in events})
        chats = await pg.fetch("SELECT * FROM chats")
        assert sum(c["message_count"] for c in chats) == len(rows)
        photo = fixture_event("message_photo_caption")
        row = await pg.fetchrow(
            "SELECT * FROM messages WHERE chat_id = $1 AND message_id = $2",
            photo.data.chat.id,
            photo.data.message_id,
        )
        assert row is not None
        assert row["kind"] == "photo"
        assert row["text"] == photo.data.text
        assert row["original"] is not None

    async def test_an_integer_beyond_64_bits_in_original_reaches_jsonb_exactly(
        self,
        js: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
    ) -> None:
        event = message_event(1)
        original = {"big": 2**70, "after": "x"}
        event = event.model_copy(
            update={"data": event.data.model_copy(update={"original": original})}
        )
        async with running_projector(nats_client, query_settings):
            await wait_for_checkpoint(pg, (await publish(js, query_settings, event)).seq)
        assert await pg.fetchval("SELECT (original->>'big')::numeric FROM messages") == 2**70
        assert await pg.fetchval("SELECT count(*) FROM parked_events") == 0

    async def test_edit_before_its_message_is_merged(
        self,
        js: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
    ) -> None:
        edit = message_event(7, text="after edit", edited_at=T0 + timedelta(hours=1))
        older_edit = message_event(7, text="first edit", edited_at=T0 + timedelta(minutes=1))
        received = message_event(7, text="as sent")
        async with running_projector(nats_client, query_settings):
            await publish(js, query_settings, edit)
            await wait_for_checkpoint(pg, 1)
            await publish(js, query_settings, older_edit)
            await wait_for_checkpoint(pg, 2)
            assert await pg.fetchval("SELECT text FROM messages") == "after edit"
            await publish(js, query_settings, received)
            await wait_for_checkpoint(pg, 3)
        row = await pg.fetchrow("SELECT * FROM messages")
        assert row is not None
        assert row["text"] == "after edit"
        assert row["received_seq"] == 3
        assert row["edited_at"] == T0 + timedelta(hours=1)
        assert '"as sent"' in row["original"]
        chat = await pg.fetchrow("SELECT * FROM chats")
        assert chat is not None
        assert chat["message_count"] == 1
        assert chat["last_message_preview"] == "after edit"


class TestDuplicates:
    async def test_redelivery_and_duplicate_publish_leave_counts_exact(
        self,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
    ) -> None:
        js = stream
        events = [message_event(i) for i in range(1, 31)]
        await publish_many(js, query_settings, events)
        # A retry that missed the duplicate window: the same events again under new msg ids.
        for event in events[:10]:
            await publish(js, query_settings, event, msg_id=f"{event.event_id}:again")
        # A second, redundant publish with the same msg id is dropped by JetStream.
        dup = await publish(js, query_settings, events[0])
        assert dup.duplicate
        async with running_projector(nats_client, query_settings):
            await wait_for_checkpoint(pg, 40)
        # Redelivery of everything: a fresh consumer replaying the whole stream.
        await js.delete_consumer(query_settings.stream, query_settings.projection_name)
        await pg.execute("UPDATE projection_checkpoints SET seq = 0")
        async with running_projector(nats_client, query_settings):
            await wait_for_checkpoint(pg, 40)
        assert await pg.fetchval("SELECT count(*) FROM messages") == 30
        assert await pg.fetchval("SELECT message_count FROM chats") == 30
        assert await pg.fetchval("SELECT last_message_id FROM chats") == 30


class TestPoisonAndUnknown:
    async def test_poison_is_parked_and_later_events_are_projected(
        self,
        stream: JetStreamContext,
        nats_client: NatsClient,
        query_settings: QuerySettings,
        pg: asyncpg.Connection,
    ) -> None:
        js = stream
        subject = event_subject(query_settings.subject_prefix, BOT, CHAT, "MessageReceived")
        await publish_many(js, query_settings, [message_event(i) for i in range(1, 6)])
        headers = {HEADER_MSG_ID: "bad-1", HEADER_EVENT_TYPE: "MessageReceived",
                   HEADER_EVENT_VERSION: "1"}  # fmt: skip
        await js.publish(subject, b"{not json", headers=headers)
        # Valid by the contract, but no PostgreSQL bigint can hold its message id.
        await publish(js, query_settings, message_event(2**63))
        unknown = {HEADER_MSG_ID: "unknown-1", HEADER_EVENT_TYPE: "ChatRenamed",
                   HEADER_EVENT_VERSION: "1"}  # fmt: skip
        await js.publish(subject, b'{"type": "ChatRenamed", "version": 1}', headers=unknown)
        last = await publish_many(js, query_settings, [message_event(i) for i in range(6, 11)])
        async with running_projector(nats_client, query_settings):
            await wait_for_checkpoint(pg, last)
        assert await pg.fetchval("SELECT count(*) FROM messages") == 10
        parked = await pg.fetch("SELECT * FROM parked_events ORDER BY seq")
        assert [p["seq"] for p in parked] == [6, 7]
        assert "MalformedEventError" in parked[0]["reason"]
        assert parked[0]["body"] == b"{not json"
        assert "DataError" in parked[1]["reason"]
        assert parked[1]["attempts"] == 3
        assert await pg.fetchval("SELECT unknown_count FROM projection_checkpoints") == 1
        assert await checkpoint(pg) == last


class TestPipeline:
    async def test_a_batch_of_several_chunks_parks_a_poison_in_a_later_chunk(
        self, query_settings: QuerySettings, pg: asyncpg.Connection
    ) -> None:
        """Chunks are written overlapped; a poison in one rolls them all back, then is isolated."""
        total = 2 * PIPELINE_CHUNK + 10
        poison = PIPELINE_CHUNK + 5
        unknown_seq = 2 * PIPELINE_CHUNK + 1
        batch = []
        for seq in range(1, total + 1):
            event = message_event(2**63 if seq == poison else seq)
            body, headers = encode_event(event)
            if seq == unknown_seq:
                headers = {HEADER_EVENT_TYPE: "ChatRenamed", HEADER_EVENT_VERSION: "1"}
                body = b'{"type": "ChatRenamed", "version": 1}'
            batch.append(StreamEvent(seq, "s", headers, body))
        projector = Projector(query_settings.asyncpg_dsn, "read_models")
        try:
            assert await projector.apply(batch) == total
        finally:
            await projector.close()
        assert await pg.fetchval("SELECT count(*) FROM messages") == total - 2
        assert await pg.fetchval("SELECT message_count FROM chats") == total - 2
        assert [r["seq"] for r in await pg.fetch("SELECT seq FROM parked_events")] == [poison]
        assert await pg.fetchval("SELECT unknown_count FROM projection_checkpoints") == 1
        assert await checkpoint(pg) == total


@pytest.mark.usefixtures("small_pieces")
class TestDuplicatesWithBatchesInPieces(TestDuplicates):
    """Redelivery and duplicates again, with every batch fetched and written in pieces."""


@pytest.mark.usefixtures("small_pieces")
class TestPoisonAndUnknownWithBatchesInPieces(TestPoisonAndUnknown):
    """Parking and counting again, with every batch fetched and written in pieces."""


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.CHAT_EVENTS.read_models.1.4242.17.1700000000000000000.3",
        "$JS.ACK.hub.ACCHASH.CHAT_EVENTS.read_models.2.4242.17.1700000000000000000.3.tok",
        "$JS.ACK._.ACCHASH.CHAT_EVENTS.read_models.2.4242.17.1700000000000000000.3.tok.more",
    ],
)
async def test_ack_subject_fields_are_nats_pys(reply: str) -> None:
    msg = Msg(_client=None, subject="s", reply=reply)  # type: ignore[arg-type]
    fields = ack_fields(reply)
    assert fields is not None
    assert fields.seq == msg.metadata.sequence.stream == 4242
    assert fields.delivered == msg.metadata.sequence.consumer == 17
    assert fields.pending == msg.metadata.num_pending == 3
