"""Reference, not chatlog: the raw limit on a bare Starlette route awaiting `js.publish`."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

state: dict[str, object] = {}


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    nc = await nats.connect(os.environ["BENCH_NATS_URL"])
    state["js"] = nc.jetstream()
    yield
    await nc.close()


async def webhook(request: Request) -> Response:
    body = await request.body()
    update = orjson.loads(body)
    bot_id = request.path_params["bot_id"]
    ack = await state["js"].publish(  # type: ignore[attr-defined]
        f"{os.environ['BENCH_SUBJECT']}.{bot_id}",
        body,
        headers={"Nats-Msg-Id": f"{bot_id}:{update['update_id']}"},
    )
    return Response(orjson.dumps({"seq": ack.seq}), media_type="application/json")


app = Starlette(
    routes=[Route("/telegram/{bot_id}/webhook", webhook, methods=["POST"])], lifespan=lifespan
)
