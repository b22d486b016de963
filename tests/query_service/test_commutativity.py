"""Projections are idempotent and commutative: any order, any duplication, any batching."""

from datetime import timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from query_service.projections import SeqEvent, project_events
from tests.query_service.conftest import T0, message_event, table_checksums

pytestmark = pytest.mark.asyncio

# Edit times come from a small set, so that equal edit dates (ties) happen too.
_edit = st.integers(min_value=1, max_value=4).map(lambda m: T0 + timedelta(minutes=m))


@st.composite
def histories(draw: st.DrawFn) -> list[SeqEvent]:
    """A stream of events: several chats, receives, edits, edits of messages never received."""
    events = []
    for chat_id in draw(st.lists(st.sampled_from([-100, -200, 300]), min_size=1, unique=True)):
        for message_id in draw(st.lists(st.integers(1, 12), min_size=1, max_size=6, unique=True)):
            text = draw(st.sampled_from(["hi", "hello", None]))
            if draw(st.booleans()):
                events.append(message_event(message_id, chat_id=chat_id, text=text))
            for edited_at in draw(st.lists(_edit, max_size=3)):
                title = draw(st.sampled_from(["Old title", "New title"]))
                events.append(
                    message_event(
                        message_id, chat_id=chat_id, text=f"edit {edited_at.minute}",
                        edited_at=edited_at, title=title,
                    )
                )  # fmt: skip
    order = draw(st.permutations(events))
    return list(enumerate(order, 1))


async def apply_in_batches(
    conn: asyncpg.Connection, batches: list[list[SeqEvent]]
) -> dict[str, str]:
    await conn.execute("TRUNCATE messages, chats")
    for batch in batches:
        async with conn.transaction():
            await project_events(conn, batch)
    return await table_checksums(conn)


@given(data=st.data(), history=histories())
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_any_order_duplication_and_batching_gives_the_same_tables(
    pg: asyncpg.Connection, data: st.DataObject, history: list[SeqEvent]
) -> None:
    assume(history)
    reference = await apply_in_batches(pg, [[event] for event in history])
    duplicates = data.draw(st.lists(st.sampled_from(history), max_size=len(history)))
    delivered = data.draw(st.permutations(history + duplicates))
    batches: list[list[SeqEvent]] = []
    rest = list(delivered)
    while rest:
        size = data.draw(st.integers(1, max(1, len(rest))))
        batches.append(rest[:size])
        rest = rest[size:]
    assert await apply_in_batches(pg, batches) == reference
    counts = await pg.fetch(
        "SELECT c.message_count, (SELECT count(*) FROM messages m"
        " WHERE m.bot_id = c.bot_id AND m.chat_id = c.chat_id) AS n FROM chats c"
    )
    assert all(row["message_count"] == row["n"] for row in counts)
