"""The chat-history HTTP API: thin handlers over `history`, every read at a known checkpoint."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from nats.aio.client import Client as NatsClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query_service import history, repository
from query_service.checkpoints import CheckpointWatcher
from query_service.config import QuerySettings
from query_service.exceptions import NotYetError, UnauthorizedError, UnavailableError
from query_service.schemas import ChatPage, ChatView, MessagePage, MessageView, ProjectionStatus
from query_service.status import projection_status
from shared.auth import bearer_token, key_is_valid
from shared.config import BOT_ID_PATTERN

SEQ_HEADER: Final = "X-Chatlog-Seq"
MIN_SEQ_HEADER: Final = "X-Chatlog-Min-Seq"
MAX_PAGE: Final = 200


@dataclass(slots=True)
class QueryState:
    """What the lifespan made: one engine, one checkpoint watcher, one NATS connection."""

    settings: QuerySettings
    engine: AsyncEngine
    watcher: CheckpointWatcher
    nats: NatsClient | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A read-only REPEATABLE READ transaction and the checkpoint its data reflects."""

    conn: AsyncConnection
    seq: int


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


async def snapshot(
    request: Request,
    state: StateDep,
    min_seq: Annotated[int | None, Query(ge=0)] = None,
    wait: Annotated[float, Query(ge=0, description="seconds; capped")] = 2.0,
    min_seq_header: Annotated[int | None, Header(alias=MIN_SEQ_HEADER, ge=0)] = None,
) -> AsyncIterator[Snapshot]:
    """Wait for `min_seq` if asked, then open a snapshot and read its checkpoint."""
    wanted = min_seq if min_seq is not None else min_seq_header
    if wanted is not None:
        timeout = min(wait, state.settings.consistency_max_wait)
        reached = await state.watcher.wait_for(wanted, timeout)
        if reached < wanted:
            request.state.chatlog_seq = reached
            raise NotYetError(
                f"the read models reflect events up to {reached}, not yet {wanted}",
                headers={"Retry-After": "1"},
                seq=reached,
                min_seq=wanted,
            )
    try:
        async with state.engine.connect() as conn, conn.begin():
            # One statement, inside the transaction: a connection-level isolation option
            # would cost a round trip to set it and another to reset it on release.
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            # Locked before the snapshot is taken: a replay's swap (which locks this table
            # first) then makes the read wait and see the new tables whole, never the new
            # tables at a snapshot taken before they were filled (`query_service.shadow`).
            await conn.execute(text("LOCK TABLE projection_checkpoints IN ACCESS SHARE MODE"))
            seq = await repository.read_checkpoint(conn, state.settings.projection_name)
            state.watcher.advance(seq)
            request.state.chatlog_seq = seq
            yield Snapshot(conn, seq)
    except (DBAPIError, OSError) as exc:
        raise UnavailableError("the database cannot be reached") from exc


SnapshotDep = Annotated[Snapshot, Depends(snapshot)]
BotIdPath = Annotated[str, Path(pattern=BOT_ID_PATTERN, max_length=64)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
health = APIRouter()


@router.get("/chats")
async def list_chats(
    snap: SnapshotDep,
    bot_id: Annotated[str | None, Query(pattern=BOT_ID_PATTERN)] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> ChatPage:
    """Chats by last activity, most recent first."""
    return await history.chat_page(snap.conn, limit, bot_id, cursor)


@router.get("/bots/{bot_id}/chats/{chat_id}")
async def get_chat(snap: SnapshotDep, bot_id: BotIdPath, chat_id: int) -> ChatView:
    """One chat's summary."""
    return await history.chat(snap.conn, bot_id, chat_id)


@router.get("/bots/{bot_id}/chats/{chat_id}/messages")
async def list_messages(  # noqa: PLR0917 - FastAPI parameters
    snap: SnapshotDep,
    bot_id: BotIdPath,
    chat_id: int,
    limit: Limit = 50,
    before: str | None = None,
    after: str | None = None,
    thread_id: int | None = None,
) -> MessagePage:
    """A page of a chat's history, newest first; `before`/`after` take the page's cursors."""
    return await history.message_page(
        snap.conn, bot_id, chat_id, limit=limit, before=before, after=after, thread_id=thread_id
    )


@router.get("/bots/{bot_id}/chats/{chat_id}/messages/{message_id}")
async def get_message(
    snap: SnapshotDep, bot_id: BotIdPath, chat_id: int, message_id: int
) -> MessageView:
    """One message."""
    return await history.message(snap.conn, bot_id, chat_id, message_id)


@router.get("/projections")
async def get_projections(snap: SnapshotDep, state: StateDep) -> ProjectionStatus:
    """The projection's checkpoint, lag behind the stream, parked and unknown counts."""
    name, stream = state.settings.projection_name, state.settings.stream
    return await projection_status(snap.conn, name, state.nats, stream)


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(state: StateDep) -> dict[str, str]:
    """The database answers."""
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (DBAPIError, OSError) as exc:
        raise UnavailableError("the database cannot be reached") from exc
    return {"status": "ready"}


class SeqHeaderMiddleware:
    """Puts `X-Chatlog-Seq` on every response: the read's checkpoint, else the latest known."""

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
                if not any(k.lower() == b"x-chatlog-seq" for k, _ in headers):
                    seq = scope.get("state", {}).get("chatlog_seq", self.watcher.current())
                    headers.append((b"x-chatlog-seq", str(seq).encode()))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_seq)


class CheckpointSource:
    """The latest checkpoint known to the process, filled in by the lifespan."""

    def __init__(self) -> None:
        self.watcher: CheckpointWatcher | None = None

    def current(self) -> int:
        """The latest known checkpoint, 0 before the lifespan started."""
        return self.watcher.seq if self.watcher is not None else 0
