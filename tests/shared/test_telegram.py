"""Telegram Updates to events: every real fixture, malformed input, determinism."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.errors import UpdateValidationError
from shared.events import MessageEdited, MessageReceived
from shared.telegram import Ignored, map_update
from tests.conftest import FIXTURES

UPDATES = FIXTURES / "updates"

# Expected event type and content kind for each fixture; None means "ignored, with a reason".
EXPECTED: dict[str, tuple[str, str] | None] = {
    "business_connection": None,
    "business_message": ("MessageReceived", "text"),
    "business_message_outgoing_via_bot": ("MessageReceived", "text"),
    "callback_query": None,
    "channel_post": ("MessageReceived", "text"),
    "channel_post_legacy_2017": ("MessageReceived", "text"),
    "channel_post_pinned_service": ("MessageReceived", "pinned_message"),
    "chat_boost": None,
    "chat_member": None,
    "chosen_inline_result": None,
    "deleted_business_messages": None,
    "edited_business_message": ("MessageEdited", "text"),
    "edited_channel_post": ("MessageEdited", "text"),
    "edited_message": ("MessageEdited", "text"),
    "edited_message_anonymous_admin": ("MessageEdited", "text"),
    "edited_message_live_location": ("MessageEdited", "location"),
    "inline_query": None,
    "inline_query_cyrillic": None,
    "inline_query_no_chat_type": None,
    "message_audio": ("MessageReceived", "audio"),
    "message_bot_command": ("MessageReceived", "text"),
    "message_contact": ("MessageReceived", "contact"),
    "message_dice": ("MessageReceived", "dice"),
    "message_document": ("MessageReceived", "document"),
    "message_entities_custom_emoji_forwarded": ("MessageReceived", "text"),
    "message_entities_nested": ("MessageReceived", "text"),
    "message_forum_topic_created": ("MessageReceived", "forum_topic_created"),
    "message_forward_legacy_anonymous_admin": ("MessageReceived", "text"),
    "message_forward_legacy_forward_from_chat": ("MessageReceived", "text"),
    "message_forward_legacy_forward_from_via_bot": ("MessageReceived", "text"),
    "message_forward_origin_channel": ("MessageReceived", "text"),
    "message_group_text": ("MessageReceived", "text"),
    "message_group_text_2022": ("MessageReceived", "text"),
    "message_group_text_ascii_escaped": ("MessageReceived", "text"),
    "message_left_chat_member": ("MessageReceived", "left_chat_member"),
    "message_location": ("MessageReceived", "location"),
    "message_migrate_from_chat_id": ("MessageReceived", "migrate_from_chat_id"),
    "message_migrate_to_chat_id": ("MessageReceived", "migrate_to_chat_id"),
    "message_new_chat_members": ("MessageReceived", "new_chat_members"),
    "message_new_chat_members_supergroup": ("MessageReceived", "new_chat_members"),
    "message_photo_caption": ("MessageReceived", "photo"),
    "message_pinned_service": ("MessageReceived", "pinned_message"),
    "message_poll_quiz": ("MessageReceived", "poll"),
    "message_private_text": ("MessageReceived", "text"),
    "message_private_text_2017": ("MessageReceived", "text"),
    "message_reaction": None,
    "message_reaction_anonymous_actor_chat": None,
    "message_reaction_count": None,
    "message_reply_to_story_in_supergroup": ("MessageReceived", "text"),
    "message_reply_with_quote_entities": ("MessageReceived", "text"),
    "message_sticker": ("MessageReceived", "sticker"),
    "message_story": ("MessageReceived", "story"),
    "message_supergroup_anonymous_admin": ("MessageReceived", "text"),
    "message_supergroup_forum_topic": ("MessageReceived", "text"),
    "message_text_4096": ("MessageReceived", "text"),
    "message_text_cyrillic_emoji": ("MessageReceived", "text"),
    "message_text_emoji_utf16_entities": ("MessageReceived", "text"),
    "message_text_rtl_mixed": ("MessageReceived", "text"),
    "message_via_bot": ("MessageReceived", "text"),
    "message_video": ("MessageReceived", "video"),
    "message_voice": ("MessageReceived", "voice"),
    "my_chat_member_channel_admin": None,
    "my_chat_member_group_added": None,
    "my_chat_member_group_promoted": None,
    "my_chat_member_private_blocked": None,
    "poll": None,
}


def load(name: str) -> dict[str, Any]:
    return json.loads((UPDATES / f"{name}.json").read_text(encoding="utf-8"))


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in UPDATES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_to_expected_event(name: str) -> None:
    update = load(name)
    result = map_update("bot_1", update)
    expected = EXPECTED[name]
    if expected is None:
        assert isinstance(result, Ignored)
        assert result.reason
        return
    assert isinstance(result, MessageReceived | MessageEdited)
    assert (result.type, result.data.kind) == expected
    assert result.event_id == f"tg:bot_1:{update['update_id']}"
    assert result.bot_id == "bot_1"
    assert result.data.original == update  # the original object, unchanged
    (update_kind,) = (k for k in update if k != "update_id")
    assert result.data.update_kind == update_kind
    message = update[update_kind]
    assert result.data.chat.id == message["chat"]["id"]
    assert result.data.message_id == message["message_id"]
    assert result.data.sent_at == datetime.fromtimestamp(message["date"], UTC)
    assert result.data.text == message.get("text", message.get("caption"))


class TestNormalizedFields:
    def test_private_text(self) -> None:
        event = map_update("b", load("message_private_text"))
        assert isinstance(event, MessageReceived)
        assert event.data.sender is not None
        assert event.data.sender.is_bot is False
        assert event.data.chat.type == "private"
        assert event.data.chat.title  # a private chat is titled by the person's name

    def test_anonymous_admin_speaks_as_the_chat(self) -> None:
        update = load("message_supergroup_anonymous_admin")
        event = map_update("b", update)
        assert isinstance(event, MessageReceived)
        assert event.data.sender is not None
        assert event.data.sender.id == update["message"]["sender_chat"]["id"]

    def test_legacy_channel_post_without_sender_is_the_channel(self) -> None:
        update = load("channel_post_legacy_2017")
        event = map_update("b", update)
        assert isinstance(event, MessageReceived)
        assert event.data.sender is not None
        assert event.data.sender.id == update["channel_post"]["chat"]["id"]
        assert event.data.sender.name == "Much channel"

    def test_forum_topic_thread_and_reply(self) -> None:
        event = map_update("b", load("message_supergroup_forum_topic"))
        assert isinstance(event, MessageReceived)
        assert event.data.thread_id == 4
        assert event.data.reply_to_message_id == 4

    def test_caption_and_caption_entities(self) -> None:
        update = load("message_photo_caption")
        event = map_update("b", update)
        assert isinstance(event, MessageReceived)
        assert event.data.text == update["message"]["caption"]
        assert event.data.entities == update["message"].get("caption_entities", [])

    def test_edit_carries_edit_time(self) -> None:
        update = load("edited_message")
        event = map_update("b", update)
        assert isinstance(event, MessageEdited)
        edited = datetime.fromtimestamp(update["edited_message"]["edit_date"], UTC)
        assert event.data.edited_at == edited
        assert event.occurred_at == edited

    def test_business_message_keeps_connection(self) -> None:
        event = map_update("b", load("business_message"))
        assert isinstance(event, MessageReceived)
        assert event.data.business_connection_id == "AAAAAcZ1t9sCAAAAwBhNvC0cAAA"


class TestDeterminism:
    @pytest.mark.parametrize("name", [n for n, e in sorted(EXPECTED.items()) if e is not None])
    def test_same_update_same_event_id(self, name: str) -> None:
        first = map_update("bot", load(name), recorded_at=datetime(2020, 1, 1, tzinfo=UTC))
        again = map_update("bot", load(name))
        assert isinstance(first, MessageReceived | MessageEdited)
        assert isinstance(again, MessageReceived | MessageEdited)
        assert first.event_id == again.event_id
        assert first.data == again.data

    def test_other_bot_other_event_id(self) -> None:
        first = map_update("a", load("message_private_text"))
        second = map_update("b", load("message_private_text"))
        assert isinstance(first, MessageReceived)
        assert isinstance(second, MessageReceived)
        assert first.event_id != second.event_id


class TestTolerance:
    def test_unknown_fields_are_kept_in_the_original(self) -> None:
        update = load("message_private_text")
        update["message"]["future_field"] = {"nested": [1, 2, 3]}
        update["brand_new_top_level"] = True
        event = map_update("b", update)
        assert isinstance(event, MessageReceived)
        assert event.data.original == update

    def test_unknown_content_is_kind_unknown(self) -> None:
        update = {
            "update_id": 1,
            "message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"},
                        "hologram": {"id": "x"}},
        }  # fmt: skip
        event = map_update("b", update)
        assert isinstance(event, MessageReceived)
        assert event.data.kind == "unknown"

    def test_unknown_update_kind_is_ignored(self) -> None:
        result = map_update("b", {"update_id": 5, "purchased_paid_media": {"from": {}}})
        assert isinstance(result, Ignored)
        assert "purchased_paid_media" in result.reason

    def test_empty_update_is_ignored(self) -> None:
        assert isinstance(map_update("b", {"update_id": 5}), Ignored)


class TestMalformed:
    @pytest.mark.parametrize(
        ("update", "field"),
        [
            ({"message": {}}, "update_id"),
            ({"update_id": "7"}, "update_id"),
            ({"update_id": 1, "message": {"message_id": 1, "date": 1}}, "message.chat"),
            (
                {"update_id": 1, "message": {"date": 1, "chat": {"id": 1, "type": "private"}}},
                "message.message_id",
            ),
            (
                {"update_id": 1, "edited_message": {"message_id": 1, "date": 1, "chat": {}}},
                "edited_message.chat.id",
            ),
            ({"update_id": 1, "channel_post": "text"}, "channel_post"),
        ],
    )
    def test_names_the_field(self, update: dict[str, Any], field: str) -> None:
        with pytest.raises(UpdateValidationError) as info:
            map_update("b", update)
        assert field in [f for f, _ in info.value.problems]
        assert field in str(info.value)

    @pytest.mark.parametrize(
        ("message_changes", "field"),
        [
            ({"text": 5}, "message (text)"),
            ({"from": {"id": "abc", "first_name": "A"}}, "message (sender.id)"),
            ({"entities": "bold"}, "message (entities)"),
        ],
    )
    def test_wrong_types_name_the_field(self, message_changes: dict[str, Any], field: str) -> None:
        update = load("message_private_text")
        update["message"].update(message_changes)
        with pytest.raises(UpdateValidationError) as info:
            map_update("b", update)
        assert field in [f for f, _ in info.value.problems]

    @pytest.mark.parametrize("update", [[], "update", 42, None])
    def test_not_an_object(self, update: object) -> None:
        with pytest.raises(UpdateValidationError):
            map_update("b", update)


def test_fixture_folder_is_present() -> None:
    assert Path(UPDATES).is_dir()
