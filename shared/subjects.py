"""Subject layout of the event stream: `<prefix>.<bot_id>.<chat_id>.<event_type>`."""


def event_subject(prefix: str, bot_id: str, chat_id: int, event_type: str) -> str:
    """The subject an event is published on; a negative chat id (`-100123`) is a valid token."""
    return f"{prefix}.{bot_id}.{chat_id}.{event_type}"


def stream_subjects(prefix: str) -> list[str]:
    """The subjects the event stream captures."""
    return [f"{prefix}.>"]


def chat_filter(prefix: str, bot_id: str, chat_id: int) -> str:
    """A subject filter matching every event of one chat, for per-chat replay."""
    return f"{prefix}.{bot_id}.{chat_id}.*"
