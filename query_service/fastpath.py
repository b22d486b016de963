"""The two hot reads, a page of a chat's messages and the chat list, answered in front of FastAPI.

FastAPI's routing, dependency solving and parameter validation cost several times the read itself
(a statement through asyncpg and an orjson body), so these two GETs are parsed here, strictly:
well-formed parameters only, each at most once, with a valid API key. Anything else (a missing
key, a limit out of range, a repeated or unknown parameter, another method) goes on to the FastAPI
routes in `api`, which answer it, errors included, exactly as before. Both call the same `history`
functions; a test holds the two paths to the same answers.
"""

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from query_service import api, history
from query_service.history import SEQ_HEADER, Answer
from shared.auth import bearer_token, key_is_valid
from shared.problems import ProblemError, problem_body, problem_parts

_MESSAGES: Final = re.compile(
    r"/v1/bots/(?P<bot_id>[A-Za-z0-9_-]{1,64})/chats/(?P<chat_id>-?[0-9]{1,18})/messages"
)
_CHATS: Final = "/v1/chats"
_INT: Final = re.compile(r"-?[0-9]{1,18}")
_SEQ: Final = re.compile(r"[0-9]{1,18}")
_SECONDS: Final = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")
_CURSOR: Final = re.compile(r"[A-Za-z0-9_-]{1,512}")
_BOT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JSON: Final = (b"content-type", b"application/json")
_SEQ_KEY: Final = SEQ_HEADER.lower().encode()
_PROBLEM_500: Final = (500, [(b"content-type", b"application/problem+json")], problem_body(500))
_log = logging.getLogger(__name__)

Read = Callable[[api.QueryState], Awaitable[Answer]]


class FastReads:
    """GET of `/v1/bots/{bot}/chats/{chat}/messages` and `/v1/chats`; the rest goes to `app`.

    The state (`api.QueryState`) is `owner.state.query`, or, without an owner, that of the
    Starlette app that runs this as its middleware (`scope["app"]`).
    """

    def __init__(self, app: ASGIApp, owner: Starlette | None = None) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a hot read this class can parse, or hand the request on."""
        parsed = _parse(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        state: api.QueryState | None = (
            getattr((self.owner or scope["app"]).state, "query", None) if parsed else None
        )
        if parsed is None or state is None or not _authorised(scope, state):
            await self.app(scope, receive, send)
            return
        read, wanted, wait = parsed
        try:
            await api.at_least(state, wanted, wait)
            result = await api.answer(state, read(state))
        except ProblemError as exc:
            status, headers, body = problem_parts(exc)
        except Exception:  # noqa: BLE001 - a bug still answers problem+json, and is logged
            _log.exception("read of %s failed", scope["path"])
            status, headers, body = _PROBLEM_500
        else:
            status, headers, body = 200, [_JSON, (_SEQ_KEY, str(result.seq).encode())], result.body
        if not any(key == _SEQ_KEY for key, _ in headers):
            headers = [*headers, (_SEQ_KEY, str(state.watcher.seq).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _authorised(scope: Scope, state: api.QueryState) -> bool:
    for key, value in scope["headers"]:
        if key == b"authorization":
            return key_is_valid(bearer_token(value.decode("latin-1")), state.settings.api_keys)
    return False


def _parse(scope: Scope) -> tuple[Read, int | None, float] | None:
    """The read, `min_seq` and `wait` of a request, or None to leave it to FastAPI."""
    path: str = scope["path"]
    if path == _CHATS:
        allowed = {"bot_id": _BOT_ID, "limit": _INT, "cursor": _CURSOR}
    elif (match := _MESSAGES.fullmatch(path)) is not None:
        allowed = {"limit": _INT, "before": _CURSOR, "after": _CURSOR, "thread_id": _INT}
    else:
        return None
    allowed |= {"min_seq": _SEQ, "wait": _SECONDS}
    params: dict[str, str] = {}
    for key, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        pattern = allowed.get(key)
        if pattern is None or key in params or not pattern.fullmatch(value):
            return None
        params[key] = value
    limit = int(params.get("limit", api.DEFAULT_PAGE))
    if not 1 <= limit <= api.MAX_PAGE:
        return None
    wanted = _min_seq(scope, params.get("min_seq"))
    if wanted == -1:
        return None
    wait = float(params.get("wait", api.DEFAULT_WAIT))
    if path == _CHATS:
        bot_id, cursor = params.get("bot_id"), params.get("cursor")

        def chats(state: api.QueryState) -> Awaitable[Answer]:
            name = state.settings.projection_name
            return history.chat_page(state.pool, name, limit, bot_id, cursor)

        return chats, wanted, wait
    assert match is not None  # noqa: S101 - not the chat list, so the messages matched
    bot, chat = match["bot_id"], int(match["chat_id"])
    thread = int(params["thread_id"]) if "thread_id" in params else None
    before, after = params.get("before"), params.get("after")

    def messages(state: api.QueryState) -> Awaitable[Answer]:
        name = state.settings.projection_name
        return history.message_page(
            state.pool, name, bot, chat, limit=limit, before=before, after=after, thread_id=thread
        )

    return messages, wanted, wait


def _min_seq(scope: Scope, query: str | None) -> int | None:
    """`min_seq` from the query, else from the header; None if neither, -1 if malformed."""
    if query is not None:
        return int(query)
    for key, value in scope["headers"]:
        if key == b"x-chatlog-min-seq":
            text = value.decode("latin-1")
            return int(text) if _SEQ.fullmatch(text) else -1
    return None
