"""The chat-history HTTP API: thin handlers over `history`, every read at a known checkpoint.

The two hot reads (a page of messages, the chat list) are also answered by `fastpath`, in front of
FastAPI, for the requests it can parse on its own; these routes document them and answer the rest.
"""

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Annotated, Final

import asyncpg
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response
from nats.aio.client import Client as NatsClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query_service import history
from query_service.checkpoints import CheckpointWatcher
from query_service.config import QuerySettings
from query_service.db import FairPool
from query_service.exceptions import NotYetError, UnauthorizedError, UnavailableError
from query_service.history import SEQ_HEADER, Answer, at
from query_service.schemas import ChatPage, ChatView, MessagePage, MessageView, ProjectionStatus
from query_service.status import projection_status
from shared.auth import bearer_token, key_is_valid
from shared.config import BOT_ID_PATTERN

MIN_SEQ_HEADER: Final = "X-Chatlog-Min-Seq"
MAX_PAGE: Final = 200
DEFAULT_PAGE: Final = 50
DEFAULT_WAIT: Final = 2.0
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)
"""What asyncpg raises when the database is down, restarting or the connection was cut."""
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class QueryState:
    """What the lifespan made: one connection pool, one checkpoint watcher, one NATS connection."""

    settings: QuerySettings
    pool: FairPool
    watcher: CheckpointWatcher
    nats: NatsClient | None


async def at_least(state: QueryState, wanted: int | None, wait: float) -> None:
    """Wait until the read models reflect the stream up to `wanted`, if asked.

    Raises:
        NotYetError: they did not within `wait` (capped by `consistency_max_wait`) seconds.
    """
    if wanted is None:
        return
    reached = await state.watcher.wait_for(wanted, min(wait, state.settings.consistency_max_wait))
    if reached < wanted:
        raise NotYetError(
            f"the read models reflect events up to {reached}, not yet {wanted}",
            headers={"Retry-After": "1", **at(reached)},
            seq=reached,
            min_seq=wanted,
        )


async def answer(state: QueryState, read: Awaitable[Answer]) -> Answer:
    """Run a read; a database that cannot be reached becomes a 503.

    Raises:
        UnavailableError: the database is down, restarting or not migrated.
    """
    try:
        result = await read
    except _UNREACHABLE as exc:
        # The pool's other connections are likely dead too: replace them all, not one per request.
        await state.pool.expire_connections()
        raise UnavailableError("the database cannot be reached") from exc
    except asyncpg.UndefinedTableError as exc:
        raise UnavailableError("the read models do not exist: run `chatlog migrate`") from exc
    state.watcher.advance(result.seq)
    return result


def json_response(result: Answer) -> Response:
    """The answer as a JSON response naming its checkpoint."""
    return Response(result.body, media_type="application/json", headers=at(result.seq))


# async: FastAPI runs a plain `def` dependency in a worker thread, which costs more than the call.
async def get_state(request: Request) -> QueryState:
    """The app's state, made by the lifespan."""
    state: QueryState = request.app.state.query
    return state


StateDep = Annotated[QueryState, Depends(get_state)]


async def require_api_key(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Refuse a request without one of the configured API keys."""
    if not key_is_valid(bearer_token(authorization), state.settings.api_keys):
        raise UnauthorizedError(
            "send `Authorization: Bearer <API key>`", headers={"WWW-Authenticate": "Bearer"}
        )


async def consistent(
    state: StateDep,
    min_seq: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    wait: Annotated[float, Query(ge=0, description="seconds; capped")] = DEFAULT_WAIT,
    min_seq_header: Annotated[int | None, Header(alias=MIN_SEQ_HEADER, ge=0, le=INT64_MAX)] = None,
) -> QueryState:
    """Wait for `min_seq` (or the `X-Chatlog-Min-Seq` header) if asked; the app's state."""
    await at_least(state, min_seq if min_seq is not None else min_seq_header, wait)
    return state


ReadDep = Annotated[QueryState, Depends(consistent)]
BotIdPath = Annotated[str, Path(pattern=BOT_ID_PATTERN, max_length=64)]
Int64Path = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
health = APIRouter()


@router.get("/chats", response_model=ChatPage)
async def list_chats(
    state: ReadDep,
    bot_id: Annotated[str | None, Query(pattern=BOT_ID_PATTERN, max_length=64)] = None,
    limit: Limit = DEFAULT_PAGE,
    cursor: str | None = None,
) -> Response:
    """Chats by last activity, most recent first."""
    name = state.settings.projection_name
    return json_response(
        await answer(state, history.chat_page(state.pool, name, limit, bot_id, cursor))
    )


@router.get("/bots/{bot_id}/chats/{chat_id}", response_model=ChatView)
async def get_chat(state: ReadDep, bot_id: BotIdPath, chat_id: Int64Path) -> Response:
    """One chat's summary."""
    name = state.settings.projection_name
    return json_response(await answer(state, history.chat(state.pool, name, bot_id, chat_id)))


@router.get("/bots/{bot_id}/chats/{chat_id}/messages", response_model=MessagePage)
async def list_messages(  # noqa: PLR0917 - FastAPI parameters
    state: ReadDep,
    bot_id: BotIdPath,
    chat_id: Int64Path,
    limit: Limit = DEFAULT_PAGE,
    before: str | None = None,
    after: str | None = None,
    thread_id: Annotated[int | None, Query(ge=INT64_MIN, le=INT64_MAX)] = None,
) -> Response:
    """A page of a chat's history, newest first; `before`/`after` take the page's cursors."""
    read = history.message_page(
        state.pool,
        state.settings.projection_name,
        bot_id,
        chat_id,
        limit=limit,
        before=before,
        after=after,
        thread_id=thread_id,
    )
    return json_response(await answer(state, read))


@router.get("/bots/{bot_id}/chats/{chat_id}/messages/{message_id}", response_model=MessageView)
async def get_message(
    state: ReadDep, bot_id: BotIdPath, chat_id: Int64Path, message_id: Int64Path
) -> Response:
    """One message."""
    name = state.settings.projection_name
    read = history.message(state.pool, name, bot_id, chat_id, message_id)
    return json_response(await answer(state, read))


@router.get("/projections")
async def get_projections(state: ReadDep) -> ProjectionStatus:
    """The projection's checkpoint, lag behind the stream, parked and unknown counts."""
    try:
        return await projection_status(
            state.pool, state.settings.projection_name, state.nats, state.settings.stream
        )
    except _UNREACHABLE as exc:
        await state.pool.expire_connections()
        raise UnavailableError("the database cannot be reached") from exc


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(state: StateDep) -> dict[str, str]:
    """The database answers."""
    try:
        await state.pool.fetchval("SELECT 1")
    except _UNREACHABLE as exc:
        await state.pool.expire_connections()
        raise UnavailableError("the database cannot be reached") from exc
    return {"status": "ready"}


class SeqHeaderMiddleware:
    """Puts `X-Chatlog-Seq` on every response without one: the latest checkpoint known."""

    def __init__(self, app: ASGIApp, watcher: "CheckpointSource") -> None:
        self.app = app
        self.watcher = watcher

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap `send` to add the header."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_seq(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == _SEQ_HEADER_KEY for k, _ in headers):
                    headers.append((_SEQ_HEADER_KEY, str(self.watcher.current()).encode()))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_seq)


_SEQ_HEADER_KEY: Final = SEQ_HEADER.lower().encode()


class CheckpointSource:
    """The latest checkpoint known to the process, filled in by the lifespan."""

    def __init__(self) -> None:
        self.watcher: CheckpointWatcher | None = None

    def current(self) -> int:
        """The latest known checkpoint, 0 before the lifespan started."""
        return self.watcher.seq if self.watcher is not None else 0
