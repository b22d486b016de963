"""The private servers fault tests rely on: stop, start again on the same port, data kept."""

import socket

import asyncpg
import nats
import pytest
from nats.js.api import StreamConfig

from chatlog.servers import NatsServer, PostgresServer

pytestmark = [pytest.mark.asyncio, pytest.mark.fault]


async def test_private_nats_survives_restart(private_nats: NatsServer) -> None:
    client = await nats.connect(private_nats.url)
    js = client.jetstream()
    await js.add_stream(config=StreamConfig(name="KEEP", subjects=["keep.>"]))
    await js.publish("keep.one", b"1")
    await client.close()

    private_nats.stop()
    assert not private_nats.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", private_nats.port), timeout=1).close()
    private_nats.start()

    client = await nats.connect(private_nats.url)
    info = await client.jetstream().stream_info("KEEP")
    assert info.state.messages == 1
    await client.close()


async def test_private_postgres_survives_restart(private_postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(private_postgres.url)
    await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
    await conn.close()

    private_postgres.stop(immediate=True)
    with pytest.raises(OSError):
        await asyncpg.connect(private_postgres.url, timeout=2)
    private_postgres.start()

    conn = await asyncpg.connect(private_postgres.url)
    assert await conn.fetchval("SELECT x FROM kept") == 7
    await conn.close()
