"""Errors the query API answers with, each a problem+json with its status."""

from shared.problems import ProblemError


class QueryError(ProblemError):
    """Base class of the query service's expected failures."""


class BadCursorError(QueryError):
    """Raised for a cursor this API did not give out, or a bad combination of cursors."""

    status = 400
    title = "Bad cursor"


class UnauthorizedError(QueryError):
    """Raised when the API key is missing or not one of `CHATLOG_API_KEYS`."""

    status = 401
    title = "Unauthorized"


class NotFoundError(QueryError):
    """Raised for a chat or message the read models do not hold."""

    status = 404
    title = "Not found"


class NotYetError(QueryError):
    """Raised when the checkpoint did not reach the requested `min_seq` within `wait`.

    503 with Retry-After: the read would be stale, and a retry a moment later may succeed.
    """

    status = 503
    title = "Not yet consistent"


class UnavailableError(QueryError):
    """Raised when the database cannot be reached."""

    status = 503
    title = "Service unavailable"
