# ruff: noqa: S608 - every statement is built from the constants of this module, never from input
"""Every query the API runs against the read models: one statement per read, through asyncpg.

Each read is a single statement outside any transaction, so it sees one snapshot, and it returns
the projection's checkpoint with its rows: the checkpoint tells how fresh the rows are
(`X-Chatlog-Seq`) without a second round trip. `projection_checkpoints` is the first table of every
statement, so a read locks it before the read models, in the order a replay's swap locks them
(`query_service.shadow`): the read then either runs before the swap or waits for it and sees the new
tables whole, since PostgreSQL takes a statement's snapshot after its locks.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from query_service.db import FairPool

# What the API shows of a message: never `original` (a whole Telegram update, as jsonb, that
# asyncpg would decode for every row) nor the projection's bookkeeping.
MESSAGE_COLUMNS: Final = (
    "message_id",
    "thread_id",
    "sender_id",
    "sender_name",
    "sender_username",
    "sender_is_bot",
    "sent_at",
    "edited_at",
    "kind",
    "text",
    "reply_to_message_id",
)
CHAT_COLUMNS: Final = (
    "bot_id",
    "chat_id",
    "type",
    "title",
    "username",
    "message_count",
    "first_message_at",
    "last_message_at",
    "last_message_preview",
)
_AT_CHECKPOINT: Final = (
    "FROM (SELECT $1::text AS name) AS wanted"
    " LEFT JOIN projection_checkpoints AS cp ON cp.name = wanted.name"
)
"""The head of every read: the checkpoint's row first, then the read models (see above)."""


def _message_page_sql(direction: str, *, thread: bool) -> str:
    """A page of messages, and whether messages lie on the other side of the cursor.

    Parameters: $1 projection, $2 bot, $3 chat, $4 rows to fetch, then the thread if `thread`,
    then the cursor unless `direction` is "newest".
    """
    where = "bot_id = $2 AND chat_id = $3" + (" AND thread_id = $5" if thread else "")
    cursor = "$6" if thread else "$5"
    if direction == "newest":
        page, order, other = where, "DESC", "false"
    elif direction == "before":
        page, order = f"{where} AND message_id < {cursor}", "DESC"
        # Ordered and limited, so the plan walks the primary key from the cursor: a bare EXISTS
        # got a generic plan that scanned the table in physical order.
        other = (
            f"(SELECT message_id FROM messages WHERE {where} AND message_id >= {cursor}"
            " ORDER BY message_id LIMIT 1) IS NOT NULL"
        )
    else:  # after: the messages just newer than the cursor, fetched oldest first
        page, order = f"{where} AND message_id > {cursor}", "ASC"
        other = (
            f"(SELECT message_id FROM messages WHERE {where} AND message_id <= {cursor}"
            " ORDER BY message_id DESC LIMIT 1) IS NOT NULL"
        )
    return (
        f"SELECT cp.seq AS checkpoint, {other} AS other,"
        " EXISTS (SELECT FROM chats WHERE bot_id = $2 AND chat_id = $3) AS chat_found,"
        f" {_columns('m', MESSAGE_COLUMNS)} {_AT_CHECKPOINT}"
        f" LEFT JOIN LATERAL (SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages WHERE {page}"
        f" ORDER BY message_id {order} LIMIT $4) AS m ON true"
        f" ORDER BY m.message_id {order}"
    )


def _chat_page_sql(*, bot: bool, cursor: bool) -> str:
    """Chats by last activity, most recent first.

    Parameters: $1 projection, $2 rows to fetch, then the bot if `bot`, then the cursor's three
    values if `cursor`.
    """
    where = ["bot_id = $3"] if bot else []
    if cursor:
        first = 4 if bot else 3
        where.append(f"(last_message_at, bot_id, chat_id) < (${first}, ${first + 1}, ${first + 2})")
    order = ("last_message_at", "bot_id", "chat_id")
    return (
        f"SELECT cp.seq AS checkpoint, {_columns('c', CHAT_COLUMNS)} {_AT_CHECKPOINT}"
        f" LEFT JOIN LATERAL (SELECT {', '.join(CHAT_COLUMNS)} FROM chats"
        f"{' WHERE ' + ' AND '.join(where) if where else ''}"
        f" ORDER BY {', '.join(f'{c} DESC' for c in order)} LIMIT $2) AS c ON true"
        f" ORDER BY {', '.join(f'c.{c} DESC' for c in order)}"
    )


def _columns(alias: str, names: tuple[str, ...]) -> str:
    return ", ".join(f"{alias}.{name}" for name in names)


_MESSAGE_PAGE: Final = {
    (direction, thread): _message_page_sql(direction, thread=thread)
    for direction in ("newest", "before", "after")
    for thread in (False, True)
}
_CHAT_PAGE: Final = {
    (bot, cursor): _chat_page_sql(bot=bot, cursor=cursor)
    for bot in (False, True)
    for cursor in (False, True)
}
_CHAT: Final = (
    f"SELECT cp.seq AS checkpoint, {', '.join(f'c.{c}' for c in CHAT_COLUMNS)} {_AT_CHECKPOINT}"
    " LEFT JOIN chats AS c ON c.bot_id = $2 AND c.chat_id = $3"
)
_MESSAGE: Final = (
    f"SELECT cp.seq AS checkpoint, {', '.join(f'm.{c}' for c in MESSAGE_COLUMNS)}"
    f" {_AT_CHECKPOINT} LEFT JOIN messages AS m"
    " ON m.bot_id = $2 AND m.chat_id = $3 AND m.message_id = $4"
)
_PROJECTION: Final = (
    "SELECT cp.seq AS checkpoint, cp.unknown_count, cp.updated_at,"
    f" (SELECT count(*) FROM parked_events) AS parked {_AT_CHECKPOINT}"
)
_CHECKPOINT: Final = "SELECT seq FROM projection_checkpoints WHERE name = $1"


@dataclass(frozen=True, slots=True)
class MessageSlice:
    """A page of messages (newest first) at a checkpoint, and what lies around it."""

    checkpoint: int
    rows: list[asyncpg.Record]
    has_older: bool
    has_newer: bool
    chat_found: bool


@dataclass(frozen=True, slots=True)
class ChatSlice:
    """A page of chats by last activity at a checkpoint, and whether more follow."""

    checkpoint: int
    rows: list[asyncpg.Record]
    has_more: bool


@dataclass(frozen=True, slots=True)
class Found:
    """One row (None if absent) at a checkpoint."""

    checkpoint: int
    row: asyncpg.Record | None


async def read_checkpoint(pool: FairPool, name: str) -> int:
    """The projection's checkpoint (0 before its first batch)."""
    return int(await pool.fetchval(_CHECKPOINT, name) or 0)


async def list_messages(
    pool: FairPool,
    name: str,
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
    direction = "after" if after is not None else "before" if before is not None else "newest"
    args: list[object] = [name, bot_id, chat_id, limit + 1]
    if thread_id is not None:
        args.append(thread_id)
    if direction != "newest":
        args.append(after if after is not None else before)
    sql = _MESSAGE_PAGE[direction, thread_id is not None]
    records = await pool.fetch(sql, *args)
    head = records[0]
    rows = [r for r in records if r["message_id"] is not None]
    more = len(rows) > limit
    # Fetched in the page's direction, shown newest first: the extra row is the farthest one.
    rows = rows[:limit]
    if direction == "after":
        rows.reverse()
    return MessageSlice(
        checkpoint=int(head["checkpoint"] or 0),
        rows=rows,
        has_older=head["other"] if direction == "after" else more,
        has_newer=more if direction == "after" else head["other"],
        chat_found=head["chat_found"],
    )


async def list_chats(
    pool: FairPool,
    name: str,
    limit: int,
    bot_id: str | None,
    after: tuple[datetime, str, int] | None,
) -> ChatSlice:
    """Chats by last activity (newest first) after the keyset `after`."""
    args: list[object] = [name, limit + 1]
    if bot_id is not None:
        args.append(bot_id)
    if after is not None:
        args += after
    sql = _CHAT_PAGE[bot_id is not None, after is not None]
    records = await pool.fetch(sql, *args)
    rows = [r for r in records if r["chat_id"] is not None]
    return ChatSlice(
        checkpoint=int(records[0]["checkpoint"] or 0),
        rows=rows[:limit],
        has_more=len(rows) > limit,
    )


async def get_chat(pool: FairPool, name: str, bot_id: str, chat_id: int) -> Found:
    """One chat's row, or None."""
    record = await pool.fetchrow(_CHAT, name, bot_id, chat_id)
    assert record is not None  # noqa: S101 - the checkpoint's row always comes back
    return Found(int(record["checkpoint"] or 0), record if record["chat_id"] is not None else None)


async def get_message(
    pool: FairPool, name: str, bot_id: str, chat_id: int, message_id: int
) -> Found:
    """One message's row, or None."""
    record = await pool.fetchrow(_MESSAGE, name, bot_id, chat_id, message_id)
    assert record is not None  # noqa: S101 - the checkpoint's row always comes back
    found = record["message_id"] is not None
    return Found(int(record["checkpoint"] or 0), record if found else None)


async def projection_row(pool: FairPool, name: str) -> tuple[int, int, datetime | None, int]:
    """(checkpoint, unknown count, when it moved, parked count) of a projection."""
    record = await pool.fetchrow(_PROJECTION, name)
    assert record is not None  # noqa: S101 - the checkpoint's row always comes back
    return (
        int(record["checkpoint"] or 0),
        int(record["unknown_count"] or 0),
        record["updated_at"],
        int(record["parked"]),
    )
