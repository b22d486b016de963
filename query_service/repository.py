"""Every query the API runs against the read models, on a connection the caller opened."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Row, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from query_service.models import Chat, ChatMessage, ParkedEvent, ProjectionCheckpoint

_messages = ChatMessage.__table__
_chats = Chat.__table__
# What the API shows of a message: never `original` (a whole Telegram update, as jsonb, that
# asyncpg would decode for every row) nor the projection's bookkeeping.
_shown = [c for c in _messages.c if c.name not in {"original", "seq", "received_seq"}]


@dataclass(frozen=True, slots=True)
class MessageSlice:
    """Rows of one page, newest first, and whether more exist on either side."""

    rows: list[Row[tuple[object, ...]]]
    has_older: bool
    has_newer: bool


async def read_checkpoint(conn: AsyncConnection, name: str) -> int:
    """The projection's checkpoint (0 before its first batch)."""
    seq = await conn.scalar(
        select(ProjectionCheckpoint.seq).where(ProjectionCheckpoint.name == name)
    )
    return int(seq or 0)


async def list_chats(
    conn: AsyncConnection,
    limit: int,
    bot_id: str | None,
    after: tuple[datetime, str, int] | None,
) -> tuple[list[Row[tuple[object, ...]]], bool]:
    """Chats by last activity (newest first) after the keyset `after`; rows and whether more."""
    query = select(_chats).order_by(
        _chats.c.last_message_at.desc(), _chats.c.bot_id.desc(), _chats.c.chat_id.desc()
    )
    if bot_id is not None:
        query = query.where(_chats.c.bot_id == bot_id)
    if after is not None:
        key = tuple_(_chats.c.last_message_at, _chats.c.bot_id, _chats.c.chat_id)
        query = query.where(key < tuple_(*after))
    rows = list((await conn.execute(query.limit(limit + 1))).all())
    return rows[:limit], len(rows) > limit


async def get_chat(
    conn: AsyncConnection, bot_id: str, chat_id: int
) -> Row[tuple[object, ...]] | None:
    """One chat's row, or None."""
    query = select(_chats).where(_chats.c.bot_id == bot_id, _chats.c.chat_id == chat_id)
    return (await conn.execute(query)).first()


async def list_messages(
    conn: AsyncConnection,
    bot_id: str,
    chat_id: int,
    *,
    limit: int,
    before: int | None = None,
    after: int | None = None,
    thread_id: int | None = None,
) -> MessageSlice:
    """A page of a chat's messages by keyset on message id, always newest first.

    The page holds the messages just older than `before`, just newer than `after`, or the newest.
    """
    where: list[ColumnElement[bool]] = [
        _messages.c.bot_id == bot_id,
        _messages.c.chat_id == chat_id,
    ]
    if thread_id is not None:
        where.append(_messages.c.thread_id == thread_id)
    query = select(*_shown).where(*where)
    if after is not None:
        query = query.where(_messages.c.message_id > after).order_by(_messages.c.message_id)
    else:
        if before is not None:
            query = query.where(_messages.c.message_id < before)
        query = query.order_by(_messages.c.message_id.desc())
    rows = list((await conn.execute(query.limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    if after is not None:
        rows.reverse()
        has_newer = more
        has_older = await _exists(conn, where, _messages.c.message_id <= after, newest_first=True)
    else:
        has_older = more
        has_newer = before is not None and await _exists(
            conn, where, _messages.c.message_id >= before, newest_first=False
        )
    return MessageSlice(rows, has_older=has_older, has_newer=has_newer)


async def _exists(
    conn: AsyncConnection,
    where: list[ColumnElement[bool]],
    extra: ColumnElement[bool],
    *,
    newest_first: bool,
) -> bool:
    # Ordered and limited, so the plan walks the primary key from the cursor: a bare EXISTS got
    # a generic plan that scanned the table in physical order and met its first match at the end
    # (the 10,000-deep page ran at a third of the first page's rate).
    key = _messages.c.message_id
    query = select(key).where(*where, extra).order_by(key.desc() if newest_first else key)
    return (await conn.execute(query.limit(1))).first() is not None


async def get_message(
    conn: AsyncConnection, bot_id: str, chat_id: int, message_id: int
) -> Row[tuple[object, ...]] | None:
    """One message's row, or None."""
    query = select(*_shown).where(
        _messages.c.bot_id == bot_id,
        _messages.c.chat_id == chat_id,
        _messages.c.message_id == message_id,
    )
    return (await conn.execute(query)).first()


async def projection_row(conn: AsyncConnection, name: str) -> tuple[int, int, datetime | None, int]:
    """(checkpoint, unknown count, when it moved, parked count) of a projection."""
    row = (
        await conn.execute(
            select(
                ProjectionCheckpoint.seq,
                ProjectionCheckpoint.unknown_count,
                ProjectionCheckpoint.updated_at,
            ).where(ProjectionCheckpoint.name == name)
        )
    ).first()
    parked = int(await conn.scalar(select(func.count()).select_from(ParkedEvent)) or 0)
    if row is None:
        return 0, 0, None, parked
    return int(row.seq), int(row.unknown_count), row.updated_at, parked
