"""The hot reads' fast path: it answers what it can parse, exactly as the FastAPI routes would."""

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from query_service.config import QuerySettings
from query_service.cursors import encode_cursor, message_cursor
from query_service.fastpath import FastReads
from query_service.main import QueryAPI, create_app
from query_service.schemas import ChatPage, MessagePage
from tests.query_service.conftest import BOT, CHAT, message_event, project_directly

pytestmark = pytest.mark.asyncio

MESSAGES = f"/v1/bots/{BOT}/chats/{CHAT}/messages"
AUTH = {"Authorization": "Bearer test-key"}

# Requests the fast path answers itself, and the schema of their 200 bodies.
FAST: list[tuple[str, dict[str, str], dict[str, str], type[BaseModel] | None]] = [
    (MESSAGES, {}, {}, MessagePage),
    (MESSAGES, {"limit": "3"}, {}, MessagePage),
    (MESSAGES, {"limit": "3", "before": message_cursor(20)}, {}, MessagePage),
    (MESSAGES, {"limit": "3", "after": message_cursor(20)}, {}, MessagePage),
    (MESSAGES, {"limit": "3", "after": message_cursor(0)}, {}, MessagePage),
    (MESSAGES, {"limit": "200", "before": message_cursor(1)}, {}, MessagePage),
    (MESSAGES, {"thread_id": "1", "limit": "2", "before": message_cursor(9)}, {}, MessagePage),
    (MESSAGES, {"min_seq": "5", "wait": "0.5"}, {}, MessagePage),
    (MESSAGES, {}, {"X-Chatlog-Min-Seq": "30"}, MessagePage),
    (MESSAGES, {"min_seq": "10000", "wait": "0"}, {}, None),  # 503: not yet
    (f"/v1/bots/{BOT}/chats/-6/messages", {}, {}, None),  # 404: no such chat
    (MESSAGES, {"before": "bm9wZQ"}, {}, None),  # 400: not a cursor
    (MESSAGES, {"before": encode_cursor(m=2**63)}, {}, None),  # 400: over a bigint
    (MESSAGES, {"before": message_cursor(5), "after": message_cursor(3)}, {}, None),  # 400
    ("/v1/chats", {}, {}, ChatPage),
    ("/v1/chats", {"limit": "1"}, {}, ChatPage),
    ("/v1/chats", {"bot_id": BOT, "limit": "1"}, {}, ChatPage),
    ("/v1/chats", {"bot_id": "nobody"}, {}, ChatPage),
    ("/v1/chats", {"cursor": message_cursor(3)}, {}, None),  # 400: not a chat cursor
]
# Requests it leaves to FastAPI.
SLOW: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
    ("GET", MESSAGES, {"limit": "201"}, AUTH),
    ("GET", MESSAGES, {"limit": "0"}, AUTH),
    ("GET", MESSAGES, {"limit": "ten"}, AUTH),
    ("GET", MESSAGES, {"limit": "+5"}, AUTH),
    ("GET", MESSAGES, {"wait": "-1"}, AUTH),
    ("GET", MESSAGES, {"min_seq": "-1"}, AUTH),
    ("GET", MESSAGES, {"unknown": "1"}, AUTH),
    ("GET", MESSAGES, {"before": ""}, AUTH),
    ("GET", MESSAGES, {}, {**AUTH, "X-Chatlog-Min-Seq": "soon"}),
    ("GET", MESSAGES, {}, {}),
    ("GET", MESSAGES, {}, {"Authorization": "Bearer wrong"}),
    ("POST", MESSAGES, {}, AUTH),
    ("GET", f"/v1/bots/{BOT}/chats/{10**20}/messages", {}, AUTH),
    ("GET", f"{MESSAGES}/5", {}, AUTH),
    ("GET", "/v1/chats", {"bot_id": "no spaces"}, AUTH),
    ("GET", "/v1/projections", {}, AUTH),
]


def _without_fast_path(app: QueryAPI) -> QueryAPI:
    app.fast_reads = None
    return app


@pytest_asyncio.fixture
async def apps(
    query_settings: QuerySettings, pg: asyncpg.Connection
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of the app as served, and of the same app without its fast path, over 30 events."""
    events = [message_event(n, thread_id=n % 2) for n in range(1, 26)]
    events += [message_event(n, chat_id=-n) for n in range(1, 6)]
    await project_directly(pg, events)
    fast, slow = create_app(query_settings), _without_fast_path(create_app(query_settings))
    async with fast.router.lifespan_context(fast), slow.router.lifespan_context(slow):
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://q")
            for app in (fast, slow)
        ]
        async with clients[0], clients[1]:
            yield clients[0], clients[1]


@pytest.mark.parametrize(("path", "params", "headers", "schema"), FAST)
async def test_both_paths_answer_alike(
    apps: tuple[httpx.AsyncClient, httpx.AsyncClient],
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    schema: type[BaseModel] | None,
) -> None:
    fast, slow = [
        await client.get(path, params=params, headers={**AUTH, **headers}) for client in apps
    ]
    assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    for header in ("content-type", "x-chatlog-seq", "retry-after"):
        assert fast.headers.get(header) == slow.headers.get(header), header
    if fast.status_code in {200, 404}:  # read at the checkpoint (else: the latest one known)
        assert fast.headers["x-chatlog-seq"] == "30"
    if schema is not None:
        assert fast.status_code == 200, fast.text
        schema.model_validate_json(fast.content)  # the body is what the OpenAPI schema says
    else:
        assert fast.headers["content-type"] == "application/problem+json"


class _Recorder:
    """The app behind the fast path, recording what reaches it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        await self.app(scope, receive, send)


async def test_the_fast_path_answers_alone_and_hands_on_the_rest(
    query_settings: QuerySettings, pg: asyncpg.Connection
) -> None:
    await project_directly(pg, [message_event(n, thread_id=n % 2) for n in range(1, 26)])
    app = _without_fast_path(create_app(query_settings))
    behind = _Recorder(app)
    fast = FastReads(behind)

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # as Starlette sets it for its middleware
        await fast(scope, receive, send)

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://q") as http,
    ):
        for path, params, headers, _ in FAST:
            response = await http.get(path, params=params, headers={**AUTH, **headers})
            assert response.status_code in {200, 400, 404, 503}
        assert behind.paths == []
        for method, path, params, headers in SLOW:
            before = len(behind.paths)
            response = await http.request(method, path, params=params, headers=headers)
            assert behind.paths[before:] == [path], (method, path, params, response.status_code)


async def test_the_app_as_served_answers_hot_reads_in_front_of_fastapi(
    query_settings: QuerySettings, pg: asyncpg.Connection
) -> None:
    await project_directly(pg, [message_event(n) for n in range(1, 4)])
    app = create_app(query_settings)
    assert isinstance(app.fast_reads, FastReads)
    behind = _Recorder(app.fast_reads.app)  # type: ignore[arg-type]
    app.fast_reads.app = behind
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://q") as http,
    ):
        page = await http.get(f"/v1/bots/{BOT}/chats/{CHAT}/messages", headers=AUTH)
        chats = await http.get("/v1/chats", headers=AUTH)
        health = await http.get("/healthz")
    assert (page.status_code, chats.status_code, health.status_code) == (200, 200, 200)
    assert behind.paths == ["/healthz"]
