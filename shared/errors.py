"""Errors raised by the shared contracts and infrastructure."""


class ChatlogError(Exception):
    """Base class of every error chatlog raises on purpose."""


class StreamConfigError(ChatlogError):
    """Raised when an existing JetStream stream's config conflicts with the one chatlog needs."""


class EventDecodeError(ChatlogError):
    """Raised when a stream message cannot be read as a chatlog event."""


class UnknownEventError(EventDecodeError):
    """Raised for an event type or version this code does not know (count it and move on)."""


class MalformedEventError(EventDecodeError):
    """Raised for a known event type whose body violates the contract (park it)."""


class UpdateValidationError(ChatlogError):
    """Raised for JSON that is not a Telegram Update chatlog can read; names each bad field."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        """(field path, what is wrong) pairs, e.g. `("message.chat", "Field required")`."""
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems))
