"""What the projection reads of an event, and a fast way to read it from a stream message.

`decode_projected` gives the same answer as `shared.codec.decode_event` (the same event, the same
`UnknownEventError` or `MalformedEventError`) for every body, only faster for the common one: a
current-version event whose body uses only the plain JSON forms that pydantic's model would accept
too (exact types, ISO 8601 times with an offset). It reads such a body once with orjson and checks
every field of the contract by those stricter rules, without building the pydantic models; any
body that does not pass them goes through `decode_event`, which decides. A stricter check can only
send a valid body to the slow path, never let an invalid one through.
"""

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

import orjson

from shared.codec import CURRENT_VERSIONS, HEADER_EVENT_TYPE, HEADER_EVENT_VERSION, decode_event
from shared.events import EventSource, MessageEdited, MessageReceived

_TIME: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_BOT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")  # shared.config.BotId, anchored
_SOURCES: Final = frozenset(source.value for source in EventSource)
_LONG_DIGITS: Final = re.compile(rb"\d{19}")
"""Where an integer may be beyond orjson's 64 bits (2**63 has 19 digits)."""
_OPTIONAL_STR: Final = ("update_kind", "business_connection_id")


class ProjectedEvent(NamedTuple):
    """The fields of a MessageReceived or MessageEdited that the read models are built from."""

    received: bool
    """A MessageReceived (else a MessageEdited)."""
    bot_id: str
    chat_id: int
    chat_type: str
    chat_title: str | None
    chat_username: str | None
    message_id: int
    thread_id: int | None
    sender_id: int | None
    sender_name: str | None
    sender_username: str | None
    sender_is_bot: bool
    sent_at: datetime
    edited_at: datetime | None
    kind: str
    text: str | None
    reply_to_message_id: int | None
    original: str | None
    """The original object as JSON text (for the jsonb column), or None."""


def projected(event: MessageReceived | MessageEdited) -> ProjectedEvent:
    """The projection's view of a decoded event."""
    data, chat, sender = event.data, event.data.chat, event.data.sender
    original = data.original
    return ProjectedEvent(
        isinstance(event, MessageReceived), event.bot_id, chat.id, chat.type, chat.title,
        chat.username, data.message_id, data.thread_id,
        sender.id if sender else None, sender.name if sender else None,
        sender.username if sender else None, sender.is_bot if sender else False,
        data.sent_at, data.edited_at, data.kind, data.text, data.reply_to_message_id,
        None if original is None else original_json(original),
    )  # fmt: skip


def original_json(original: dict[str, Any]) -> str:
    """The original object as JSON text, integers beyond 64 bits included (jsonb takes them)."""
    try:
        return orjson.dumps(original).decode()
    except TypeError:  # orjson: "Integer exceeds 64-bit range"; the stdlib writes any int
        return json.dumps(original, ensure_ascii=False, separators=(",", ":"))


def decode_projected(body: bytes, headers: Mapping[str, str] | None = None) -> ProjectedEvent:
    """`decode_event(body, headers)` as the projection sees it, with the same errors.

    Raises:
        UnknownEventError: the type or version is not one this code knows (count it and skip it).
        MalformedEventError: the body is not a valid event of its type (park it).
    """
    event_type = headers.get(HEADER_EVENT_TYPE) if headers else None
    version = headers.get(HEADER_EVENT_VERSION) if headers else None
    # orjson reads an integer beyond 64 bits as a float (lossy): a body with a run of 19 digits
    # anywhere (text included) is left to the contract's decoder, which keeps it exact.
    if (
        event_type in CURRENT_VERSIONS
        and version == str(CURRENT_VERSIONS[event_type])
        and _LONG_DIGITS.search(body) is None
    ):
        try:
            return _read_plain(orjson.loads(body), event_type, CURRENT_VERSIONS[event_type])
        except (ValueError, TypeError, KeyError, AttributeError):
            pass  # not in the plain form: the contract's own decoder decides
    return projected(decode_event(body, headers))


def _read_plain(raw: Any, event_type: str, version: int) -> ProjectedEvent:  # noqa: ANN401 - JSON
    """Read an event in the plain form, or raise ValueError (and the like) if it is not in it."""
    if (
        raw["type"] != event_type
        or _int(raw["version"]) != version
        or not isinstance(raw["event_id"], str)
        or raw["source"] not in _SOURCES
        or not isinstance(raw["bot_id"], str)
        or not _BOT_ID.fullmatch(raw["bot_id"])
    ):
        raise ValueError
    _time(raw["occurred_at"])
    _time(raw["recorded_at"])
    data = raw["data"]
    chat = data["chat"]
    sender = data.get("sender")
    sender_fields = (None, None, None, False) if sender is None else (
        _int_or_none(sender.get("id")), _str_or_none(sender.get("name")),
        _str_or_none(sender.get("username")), _bool(sender.get("is_bot", False)),
    )  # fmt: skip
    entities = data.get("entities", [])
    original = data.get("original")
    if (
        not isinstance(entities, list)
        or not all(isinstance(entity, dict) for entity in entities)
        or not (original is None or isinstance(original, dict))
        or not all(_str_or_none(data.get(name)) == data.get(name) for name in _OPTIONAL_STR)
    ):
        raise ValueError
    edited_at = data.get("edited_at")
    return ProjectedEvent(
        event_type == "MessageReceived", raw["bot_id"], _int(chat["id"]), _str(chat["type"]),
        _str_or_none(chat.get("title")), _str_or_none(chat.get("username")),
        _int(data["message_id"]), _int_or_none(data.get("thread_id")),
        *sender_fields,
        _time(data["sent_at"]), None if edited_at is None else _time(edited_at),
        _str(data["kind"]), _str_or_none(data.get("text")),
        _int_or_none(data.get("reply_to_message_id")),
        None if original is None else original_json(original),
    )  # fmt: skip


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError
    return value


def _int_or_none(value: object) -> int | None:
    return None if value is None else _int(value)


def _bool(value: object) -> bool:
    if type(value) is not bool:
        raise TypeError
    return value


def _str(value: object) -> str:
    if type(value) is not str:
        raise TypeError
    return value


def _str_or_none(value: object) -> str | None:
    return None if value is None else _str(value)


def _time(value: object) -> datetime:
    """An ISO 8601 time with an offset, as pydantic would read it (ValueError otherwise)."""
    if type(value) is not str or not _TIME.fullmatch(value):
        raise ValueError
    return datetime.fromisoformat(value)
