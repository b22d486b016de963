"""Telegram Updates become events: pure functions, no I/O.

A well-formed Update of a kind chatlog does not store becomes `Ignored` with its reason, never an
exception. Only the fields the read models need are checked; everything else, including fields of
Bot API versions newer than this code, stays in the original object unchanged.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NotRequired, Required

from pydantic import StrictInt, StrictStr, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from shared.errors import UpdateValidationError
from shared.events import EventSource, MessageEdited, MessageReceived

RECEIVED_KINDS: Final = ("message", "channel_post", "business_message")
EDITED_KINDS: Final = ("edited_message", "edited_channel_post", "edited_business_message")

CONTENT_KINDS: Final = (
    # Order matters: an animation also carries `document`, a venue also carries `location`.
    "text", "animation", "photo", "video", "video_note", "voice", "audio", "document", "sticker",
    "story", "paid_media", "venue", "location", "contact", "poll", "dice", "game", "invoice",
    "checklist", "giveaway", "giveaway_winners",
)  # fmt: skip
SERVICE_KINDS: Final = (
    "new_chat_members", "left_chat_member", "new_chat_title", "new_chat_photo",
    "delete_chat_photo", "group_chat_created", "supergroup_chat_created", "channel_chat_created",
    "message_auto_delete_timer_changed", "migrate_to_chat_id", "migrate_from_chat_id",
    "pinned_message", "successful_payment", "refunded_payment", "users_shared", "chat_shared",
    "connected_website", "write_access_allowed", "passport_data", "proximity_alert_triggered",
    "boost_added", "chat_background_set", "checklist_tasks_done", "checklist_tasks_added",
    "forum_topic_created", "forum_topic_edited", "forum_topic_closed", "forum_topic_reopened",
    "general_forum_topic_hidden", "general_forum_topic_unhidden", "giveaway_created",
    "giveaway_completed", "video_chat_scheduled", "video_chat_started", "video_chat_ended",
    "video_chat_participants_invited", "web_app_data", "gift", "unique_gift",
    "paid_message_price_changed", "direct_message_price_changed",
)  # fmt: skip
UNKNOWN_KIND: Final = "unknown"
"""Kind of a message whose content this code does not recognise (a newer Bot API's)."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """An Update chatlog does not store, and why; the webhook still answers 200."""

    reason: str


class _Chat(TypedDict):
    id: StrictInt
    type: StrictStr


class _Message(TypedDict):
    message_id: StrictInt
    date: StrictInt
    chat: _Chat


class _Update(TypedDict, total=False):
    update_id: Required[StrictInt]
    message: NotRequired[_Message]
    channel_post: NotRequired[_Message]
    business_message: NotRequired[_Message]
    edited_message: NotRequired[_Message]
    edited_channel_post: NotRequired[_Message]
    edited_business_message: NotRequired[_Message]


_update_shape: Final = TypeAdapter(_Update)


def telegram_event_id(bot_id: str, update_id: int) -> str:
    """The event id of a Telegram update: the same update always gives the same id."""
    return f"tg:{bot_id}:{update_id}"


def map_update(
    bot_id: str, update: object, *, recorded_at: datetime | None = None
) -> MessageReceived | MessageEdited | Ignored:
    """Turn a Telegram Update (parsed JSON) into an event, or say why it is ignored.

    Raises:
        UpdateValidationError: the JSON is not an Update, or a message lacks what chatlog needs
            (chat, message_id, date); the error names each field.
    """
    try:
        _update_shape.validate_python(update)
    except ValidationError as exc:
        raise UpdateValidationError(
            [(".".join(str(p) for p in e["loc"]) or "<root>", e["msg"]) for e in exc.errors()]
        ) from exc
    assert isinstance(update, dict)  # noqa: S101 - validated just above; narrows for the type checker
    for update_kind in (*RECEIVED_KINDS, *EDITED_KINDS):
        if update_kind in update:
            return _event(bot_id, update, update_kind, recorded_at or datetime.now(UTC))
    kinds = [key for key in update if key != "update_id"]
    if not kinds:
        return Ignored("the update carries no content")
    return Ignored(f"updates of kind {kinds[0]!r} are not stored")


def _event(
    bot_id: str, update: dict[str, Any], update_kind: str, recorded_at: datetime
) -> MessageReceived | MessageEdited:
    data = message_fields(update[update_kind], update_kind=update_kind, original=update)
    edited = update_kind in EDITED_KINDS
    model = MessageEdited if edited else MessageReceived
    try:
        # One validation of the whole event: the hot path builds no intermediate models.
        return model.model_validate(
            {
                "event_id": telegram_event_id(bot_id, update["update_id"]),
                "occurred_at": (data["edited_at"] or data["sent_at"])
                if edited
                else data["sent_at"],
                "recorded_at": recorded_at,
                "bot_id": bot_id,
                "source": EventSource.TELEGRAM,
                "data": data,
            }
        )
    except ValidationError as exc:
        # A field of the right name but the wrong type (`"text": 5`): still the client's error.
        raise UpdateValidationError(
            [
                (f"{update_kind} ({'.'.join(str(p) for p in e['loc'][1:])})", e["msg"])
                for e in exc.errors()
            ]
        ) from exc


def message_fields(
    message: dict[str, Any], *, update_kind: str | None, original: dict[str, Any] | None
) -> dict[str, Any]:
    """The fields of `MessageData` for a Telegram Message, unvalidated."""
    chat = message["chat"]
    reply = message.get("reply_to_message")
    edit_date = message.get("edit_date")
    return {
        "chat": {
            "id": chat["id"],
            "type": chat["type"],
            "title": chat.get("title") or _full_name(chat),
            "username": chat.get("username"),
        },
        "message_id": message["message_id"],
        "thread_id": message.get("message_thread_id"),
        "sender": _sender(message),
        "sent_at": datetime.fromtimestamp(message["date"], UTC),
        "edited_at": datetime.fromtimestamp(edit_date, UTC) if isinstance(edit_date, int) else None,
        "kind": content_kind(message),
        "text": message.get("text", message.get("caption")),
        "reply_to_message_id": reply.get("message_id") if isinstance(reply, dict) else None,
        "entities": message.get("entities", message.get("caption_entities")) or [],
        "update_kind": update_kind,
        "business_connection_id": message.get("business_connection_id"),
        "original": original,
    }


def content_kind(message: dict[str, Any]) -> str:
    """What a message holds: a content kind, a service kind, or `unknown`."""
    for kind in CONTENT_KINDS:
        if kind in message:
            return kind
    for kind in SERVICE_KINDS:
        if kind in message:
            return kind
    return UNKNOWN_KIND


def _sender(message: dict[str, Any]) -> dict[str, Any] | None:
    # An anonymous admin or a channel speaks as a chat: `sender_chat` is the truth then, and
    # `from` is a placeholder bot (GroupAnonymousBot, Channel_Bot).
    who = message.get("sender_chat") or message.get("from")
    if not isinstance(who, dict):
        if message["chat"].get("type") == "channel":
            who = message["chat"]
        else:
            return None
    return {
        "id": who.get("id"),
        "name": who.get("title") or _full_name(who),
        "username": who.get("username"),
        "is_bot": bool(who.get("is_bot", False)),
    }


def _full_name(who: dict[str, Any]) -> str | None:
    parts = [who.get("first_name"), who.get("last_name")]
    name = " ".join(p for p in parts if isinstance(p, str) and p)
    return name or None
