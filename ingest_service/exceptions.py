"""Errors of the ingest service; each is answered as problem+json with its status."""

from shared.problems import ProblemError


class IngestError(ProblemError):
    """Base class of the ingest service's expected failures."""


class UnknownBotError(IngestError):
    """Raised for a webhook of a bot this deployment has no secret for."""

    status = 404
    title = "Unknown bot"


class UnauthorizedError(IngestError):
    """Raised for a missing or wrong secret token or API key."""

    status = 401
    title = "Unauthorized"


class BodyTooLargeError(IngestError):
    """Raised when a body (or the event made from it) is over the limit."""

    status = 413
    title = "Content Too Large"


class ClientDisconnectedError(IngestError):
    """Raised when the client disconnects before its body arrived (nothing is published)."""

    status = 400
    title = "Client disconnected"


class InvalidJSONError(IngestError):
    """Raised for a body that is not JSON."""

    status = 400
    title = "Invalid JSON"


class InvalidUpdateError(IngestError):
    """Raised for JSON that is not an Update chatlog can read."""

    status = 422
    title = "Invalid Telegram Update"


class MissingIdempotencyKeyError(IngestError):
    """Raised for a write without an `Idempotency-Key` header."""

    status = 400
    title = "Idempotency-Key required"


class EventStoreUnavailableError(IngestError):
    """Raised when JetStream did not acknowledge the event: nothing was accepted, retry."""

    status = 503
    title = "Event store unavailable"
