"""Opaque pagination cursors: base64url of a small JSON object, checked when read back."""

import base64
import binascii
from datetime import datetime
from typing import Any, TypeGuard

import orjson

from query_service.exceptions import BadCursorError


def encode_cursor(**position: Any) -> str:  # noqa: ANN401 - JSON values of any kind
    """A cursor holding `position`."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).rstrip(b"=").decode()


def _decode(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadCursorError("the cursor is not one this API gave out") from exc
    if not isinstance(position, dict):
        raise BadCursorError("the cursor is not one this API gave out")
    return position


def _is_int64(value: object) -> TypeGuard[int]:
    """An integer that fits a PostgreSQL bigint (and not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def message_cursor(message_id: int) -> str:
    """A cursor at a message of a chat."""
    return encode_cursor(m=message_id)


def read_message_cursor(cursor: str) -> int:
    """The message id of a message cursor.

    Raises:
        BadCursorError: not a message cursor.
    """
    position = _decode(cursor)
    value = position.get("m")
    if not _is_int64(value) or set(position) != {"m"}:
        raise BadCursorError("not a message cursor")
    return value


def chat_cursor(last_message_at: datetime, bot_id: str, chat_id: int) -> str:
    """A cursor at a chat in the list of chats by last activity."""
    return encode_cursor(t=last_message_at.isoformat(), b=bot_id, c=chat_id)


def read_chat_cursor(cursor: str) -> tuple[datetime, str, int]:
    """(last activity, bot id, chat id) of a chat cursor.

    Raises:
        BadCursorError: not a chat cursor.
    """
    position = _decode(cursor)
    when, bot_id, chat_id = position.get("t"), position.get("b"), position.get("c")
    if not (isinstance(when, str) and isinstance(bot_id, str) and _is_int64(chat_id)):
        raise BadCursorError("not a chat cursor")
    try:
        moment = datetime.fromisoformat(when)
    except ValueError as exc:
        raise BadCursorError("not a chat cursor") from exc
    if moment.tzinfo is None:
        raise BadCursorError("not a chat cursor")
    return moment, bot_id, chat_id
