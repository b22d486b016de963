"""Applying events to the read models: set-based, idempotent and commutative.

A batch of events is first reduced in Python (one row per message, one identity per chat), then
written with one statement for `messages` and `chats` together. Every rule is a maximum or a
minimum over a total order, so the same set of events gives the same tables in any order, any
number of times:

- a message shows its newest version: the greatest (edit date, stream sequence), where the
  MessageReceived counts as older than any edit; so an edit that arrives first is kept, and the
  message merges into it when it comes;
- `original` is the MessageReceived's object (the one with the smallest sequence), or the newest
  edit's until the message arrives;
- a chat's identity comes from its event with the greatest (message id, sequence);
- `message_count` grows only by rows actually inserted, so it counts distinct messages;
- first/last message time are the minimum/maximum `sent_at` of its events; the preview is the
  current text of the message with the greatest id.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import asyncpg

from query_service.projected import ProjectedEvent, projected
from shared.events import MessageEdited, MessageReceived

PREVIEW_CHARS: Final = 120
_NEVER: Final = datetime.min.replace(tzinfo=UTC)

Event = MessageReceived | MessageEdited
SeqEvent = tuple[int, Event | ProjectedEvent]
"""An event (or the projection's view of one) with its stream sequence."""

_MESSAGE_COLUMNS: Final = (
    ("bot_id", "text"), ("chat_id", "bigint"), ("message_id", "bigint"),
    ("thread_id", "bigint"), ("sender_id", "bigint"), ("sender_name", "text"),
    ("sender_username", "text"), ("sender_is_bot", "boolean"), ("sent_at", "timestamptz"),
    ("edited_at", "timestamptz"), ("kind", "text"), ("text", "text"),
    ("reply_to_message_id", "bigint"), ("original", "text"), ("seq", "bigint"),
    ("received_seq", "bigint"),
)  # fmt: skip
_VERSIONED: Final = [
    name
    for name, _ in _MESSAGE_COLUMNS
    if name not in {"bot_id", "chat_id", "message_id", "original", "received_seq"}
]
_NEWER: Final = (
    "(COALESCE(excluded.edited_at, '-infinity'), excluded.seq)"
    " > (COALESCE(m.edited_at, '-infinity'), m.seq)"
)
_EARLIER_RECEIVED: Final = (
    "(excluded.received_seq IS NOT NULL"
    " AND (m.received_seq IS NULL OR excluded.received_seq < m.received_seq))"
)
_CHAT_INFO: Final = ("type", "title", "username", "info_message_id", "info_seq")
_INFO_NEWER: Final = (
    "(excluded.info_message_id, excluded.info_seq) > (chats.info_message_id, chats.info_seq)"
)
_N = len(_MESSAGE_COLUMNS)
_NAMES: Final = ", ".join(name for name, _ in _MESSAGE_COLUMNS)
_SELECTED: Final = ", ".join(
    "original::jsonb" if name == "original" else name for name, _ in _MESSAGE_COLUMNS
)
_ARRAYS: Final = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(_MESSAGE_COLUMNS, 1))
_SET_VERSIONED: Final = ", ".join(
    f"{c} = CASE WHEN {_NEWER} THEN excluded.{c} ELSE m.{c} END" for c in _VERSIONED
)
_SET_INFO: Final = ", ".join(
    f"{c} = CASE WHEN {_INFO_NEWER} THEN excluded.{c} ELSE chats.{c} END" for c in _CHAT_INFO
)

APPLY_SQL: Final = f"""
WITH m_in AS (
    INSERT INTO messages AS m ({_NAMES})
    SELECT {_SELECTED}
    FROM unnest({_ARRAYS}) AS u({_NAMES})
    ON CONFLICT (bot_id, chat_id, message_id) DO UPDATE SET
        {_SET_VERSIONED},
        original = CASE
            WHEN {_EARLIER_RECEIVED} THEN excluded.original
            WHEN m.received_seq IS NULL AND excluded.received_seq IS NULL AND {_NEWER}
                THEN excluded.original
            ELSE m.original END,
        received_seq = LEAST(m.received_seq, excluded.received_seq)
    WHERE {_NEWER} OR {_EARLIER_RECEIVED}
    RETURNING m.bot_id, m.chat_id, m.message_id, m.kind, m.text, (m.xmax = 0) AS inserted
), touched AS (
    SELECT bot_id, chat_id,
        count(*) FILTER (WHERE inserted) AS inserted,
        max(message_id) AS last_id,
        (array_agg(COALESCE(left(text, {PREVIEW_CHARS}), '[' || kind || ']')
            ORDER BY message_id DESC))[1] AS preview
    FROM m_in GROUP BY bot_id, chat_id
)
INSERT INTO chats (bot_id, chat_id, {", ".join(_CHAT_INFO)}, message_count,
    first_message_at, last_message_at, last_message_id, last_message_preview)
SELECT i.bot_id, i.chat_id, {", ".join(f"i.{c}" for c in _CHAT_INFO)}, COALESCE(t.inserted, 0),
    i.first_at, i.last_at, i.last_id,
    CASE WHEN t.last_id = i.last_id THEN t.preview END
FROM unnest(${_N + 1}::text[], ${_N + 2}::bigint[], ${_N + 3}::text[], ${_N + 4}::text[],
        ${_N + 5}::text[], ${_N + 6}::bigint[], ${_N + 7}::bigint[], ${_N + 8}::timestamptz[],
        ${_N + 9}::timestamptz[], ${_N + 10}::bigint[])
    AS i(bot_id, chat_id, {", ".join(_CHAT_INFO)}, first_at, last_at, last_id)
LEFT JOIN touched t USING (bot_id, chat_id)
ON CONFLICT (bot_id, chat_id) DO UPDATE SET
    {_SET_INFO},
    message_count = chats.message_count + excluded.message_count,
    first_message_at = LEAST(chats.first_message_at, excluded.first_message_at),
    last_message_at = GREATEST(chats.last_message_at, excluded.last_message_at),
    last_message_preview = CASE
        WHEN excluded.last_message_preview IS NOT NULL
            AND excluded.last_message_id >= chats.last_message_id
        THEN excluded.last_message_preview
        ELSE chats.last_message_preview END,
    last_message_id = GREATEST(chats.last_message_id, excluded.last_message_id)
"""  # noqa: S608 - built from the constants above, no input


@dataclass(slots=True)
class _MessageRow:
    version: tuple[datetime, int]
    event: ProjectedEvent
    received: tuple[int, ProjectedEvent] | None


@dataclass(slots=True)
class _ChatRow:
    info_key: tuple[int, int]
    info: tuple[str, str | None, str | None]
    first_at: datetime
    last_at: datetime


def reduce_batch(events: Sequence[SeqEvent]) -> tuple[list[list[object]], list[list[object]]]:
    """Column arrays of `APPLY_SQL`: messages (one row per message) then chats (one per chat).

    Several events of one batch may touch one row; merging them here with the same rules as the
    SQL lets one statement write the whole batch.
    """
    rows: dict[tuple[str, int, int], _MessageRow] = {}
    chats: dict[tuple[str, int], _ChatRow] = {}
    for seq, event in events:
        view = event if isinstance(event, ProjectedEvent) else projected(event)
        _merge_message(rows, seq, view)
        _merge_chat(chats, seq, view)
    message_rows = [_message_values(key, row) for key, row in rows.items()]
    chat_rows = [
        (bot_id, chat_id, *chat.info, *chat.info_key, chat.first_at, chat.last_at,
         chat.info_key[0])
        for (bot_id, chat_id), chat in chats.items()
    ]  # fmt: skip
    return _columns(message_rows, _N), _columns(chat_rows, 10)


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _merge_message(
    rows: dict[tuple[str, int, int], _MessageRow], seq: int, event: ProjectedEvent
) -> None:
    key = (event.bot_id, event.chat_id, event.message_id)
    version = (event.edited_at or _NEVER, seq)
    received = (seq, event) if event.received else None
    row = rows.get(key)
    if row is None:
        rows[key] = _MessageRow(version, event, received)
        return
    if version > row.version:
        row.version, row.event = version, event
    if received is not None and (row.received is None or seq < row.received[0]):
        row.received = received


def _merge_chat(chats: dict[tuple[str, int], _ChatRow], seq: int, event: ProjectedEvent) -> None:
    key = (event.bot_id, event.chat_id)
    info_key = (event.message_id, seq)
    sent_at = event.sent_at
    chat = chats.get(key)
    if chat is None:
        info = (event.chat_type, event.chat_title, event.chat_username)
        chats[key] = _ChatRow(info_key, info, sent_at, sent_at)
        return
    if info_key > chat.info_key:
        chat.info_key = info_key
        chat.info = (event.chat_type, event.chat_title, event.chat_username)
    if sent_at < chat.first_at:
        chat.first_at = sent_at
    elif sent_at > chat.last_at:
        chat.last_at = sent_at


def _message_values(key: tuple[str, int, int], row: _MessageRow) -> tuple[object, ...]:
    event, received = row.event, row.received
    return (
        *key, event.thread_id, event.sender_id, event.sender_name, event.sender_username,
        event.sender_is_bot, event.sent_at, event.edited_at, event.kind, event.text,
        event.reply_to_message_id, received[1].original if received else event.original,
        row.version[1], received[0] if received else None,
    )  # fmt: skip


async def project_events(conn: asyncpg.Connection, events: Sequence[SeqEvent]) -> None:
    """Apply MessageReceived and MessageEdited events to `messages` and `chats` (no commit)."""
    if not events:
        return
    message_columns, chat_columns = reduce_batch(events)
    await conn.execute(APPLY_SQL, *message_columns, *chat_columns)
