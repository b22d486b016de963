"""Settings come from CHATLOG_* variables, with types and checks."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from shared.config import ChatlogSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHATLOG_NATS_URL", "CHATLOG_STREAM", "CHATLOG_SUBJECT_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    settings = ChatlogSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.nats_servers == ["nats://127.0.0.1:4222"]
    assert settings.stream == "CHAT_EVENTS"
    assert settings.subject_prefix == "chatlog.events"
    assert settings.stream_duplicate_window == timedelta(minutes=2)
    assert settings.stream_max_age == timedelta(0)
    assert settings.api_keys == []


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATLOG_NATS_URL", "nats://a:4222, nats://b:4222")
    monkeypatch.setenv("CHATLOG_API_KEYS", '["k1", "k2"]')
    monkeypatch.setenv("CHATLOG_STREAM_DUPLICATE_WINDOW", "PT30S")
    settings = ChatlogSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.nats_servers == ["nats://a:4222", "nats://b:4222"]
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(settings)
    assert settings.stream_duplicate_window == timedelta(seconds=30)


@pytest.mark.parametrize("prefix", ["", "a..b", "a.>", "a b", "a.*"])
def test_bad_subject_prefix(prefix: str) -> None:
    with pytest.raises(ValidationError, match="subject_prefix"):
        ChatlogSettings(_env_file=None, subject_prefix=prefix)  # type: ignore[call-arg]


@pytest.mark.parametrize("stream", ["", "A.B", "A B", "A*"])
def test_bad_stream_name(stream: str) -> None:
    with pytest.raises(ValidationError, match="stream"):
        ChatlogSettings(_env_file=None, stream=stream)  # type: ignore[call-arg]


@pytest.mark.parametrize(("given", "level"), [("warning", "WARNING"), ("Debug", "DEBUG")])
def test_log_level_any_case(given: str, level: str) -> None:
    settings = ChatlogSettings(_env_file=None, log_level=given)  # type: ignore[call-arg]
    assert settings.log_level == level


def test_unknown_log_level() -> None:
    with pytest.raises(ValidationError, match="log_level"):
        ChatlogSettings(_env_file=None, log_level="chatty")  # type: ignore[call-arg]
