"""The shadow schema of a replay: created from the models, compared with the live one, swapped in.

`chatlog replay` builds the read models into `chatlog_replay`, a schema of their own, from the same
metadata the migrations match. The swap moves the live tables into `chatlog_retired` and the shadow
tables into the live schema in one transaction, then drops the retired ones. Readers lock
`projection_checkpoints` before the read models, and before their snapshot is taken (see
`repository`), and the swap locks it first, so a read sees the old tables or the new ones, whole,
and never waits in a deadlock.
"""

from typing import Final

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from query_service.models import Base
from query_service.projector import NOTIFY_CHANNEL

SHADOW_SCHEMA: Final = "chatlog_replay"
RETIRED_SCHEMA: Final = "chatlog_retired"

TABLES: Final = ("projection_checkpoints", "messages", "chats", "parked_events")
"""The tables a replay rebuilds and swaps, in locking order: readers start with the checkpoint."""

PER_RUN_COLUMNS: Final = frozenset({"parked_at", "updated_at"})
"""Columns that record when a row was written, not what the events say: not compared."""


class ShadowSchemaError(Exception):
    """Raised when the live read models are missing (run `chatlog migrate` first)."""


def quote(name: str) -> str:
    """`name` as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def shadow_ddl() -> list[str]:
    """CREATE TABLE and CREATE INDEX statements of the read models, with unqualified names."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    statements: list[str] = []
    for name in TABLES:
        table = Base.metadata.tables[name]
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements.extend(
            str(CreateIndex(index).compile(dialect=dialect))
            for index in sorted(table.indexes, key=lambda i: str(i.name))
        )
    return statements


async def live_schema(conn: asyncpg.Connection) -> str:
    """The schema the live read models are in, as the connection's search_path resolves them.

    Raises:
        ShadowSchemaError: there are no read-model tables to replace.
    """
    schema: str | None = await conn.fetchval(
        "SELECT relnamespace::regnamespace::text FROM pg_class"
        " WHERE oid = to_regclass('projection_checkpoints')"
    )
    if schema is None:
        raise ShadowSchemaError("no read-model tables here: run `chatlog migrate` first")
    return schema.strip('"')


async def create_shadow(conn: asyncpg.Connection) -> None:
    """Drop any leftover shadow, create it afresh and point the connection's search_path at it."""
    await drop_shadow(conn)
    await conn.execute(f"CREATE SCHEMA {SHADOW_SCHEMA}")
    await conn.execute(f"SET search_path TO {SHADOW_SCHEMA}")
    async with conn.transaction():
        for statement in shadow_ddl():
            await conn.execute(statement)


async def drop_shadow(conn: asyncpg.Connection) -> None:
    """Drop the shadow and retired schemas of an earlier replay, if any."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
    await conn.execute(f"DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE")


async def swap_in(conn: asyncpg.Connection, live: str, name: str, checkpoint: int) -> None:
    """Replace the live tables by the shadow's (inside the caller's transaction; no commit).

    Keeps the checkpoint rows of other projections, and announces the new checkpoint to the
    API's watchers (the notification goes out on commit).
    """
    tables = ", ".join(f"{quote(live)}.{table}" for table in TABLES)
    await conn.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
    await conn.execute(
        f"INSERT INTO {SHADOW_SCHEMA}.projection_checkpoints"  # noqa: S608 - identifiers only
        f" SELECT * FROM {quote(live)}.projection_checkpoints WHERE name <> $1",
        name,
    )
    await conn.execute(f"CREATE SCHEMA {RETIRED_SCHEMA}")
    for table in TABLES:
        await conn.execute(f"ALTER TABLE {quote(live)}.{table} SET SCHEMA {RETIRED_SCHEMA}")
    for table in TABLES:
        await conn.execute(f"ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA {quote(live)}")
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, f"{name}:{checkpoint}")


async def drop_retired(conn: asyncpg.Connection) -> None:
    """Drop the tables a swap retired, and the emptied shadow schema."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE")
    await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")


def _digest_sql(table: Table, schema: str) -> str:
    columns = [c.name for c in table.columns if c.name not in PER_RUN_COLUMNS]
    key = ", ".join(c.name for c in table.primary_key.columns)
    row = ", ".join(f"t.{quote(c)}" for c in columns)
    where = " WHERE t.name = $1" if table.name == "projection_checkpoints" else ""
    digest = f"md5(coalesce(string_agg(md5(row({row})::text), '' ORDER BY {key}), ''))"
    return f"SELECT count(*), {digest} FROM {quote(schema)}.{table.name} t{where}"  # noqa: S608


async def table_digests(conn: asyncpg.Connection, schema: str, name: str) -> dict[str, str]:
    """Row count and a content checksum of each read-model table of `schema`.

    Of `projection_checkpoints`, only the row of the projection `name` counts; columns in
    `PER_RUN_COLUMNS` are left out.
    """
    digests: dict[str, str] = {}
    for table_name in TABLES:
        table = Base.metadata.tables[table_name]
        args = (name,) if table_name == "projection_checkpoints" else ()
        row = await conn.fetchrow(_digest_sql(table, schema), *args)
        assert row is not None  # noqa: S101 - an aggregate always returns a row
        digests[table_name] = f"{row[0]} rows, md5 {row[1]}"
    return digests


async def differences(conn: asyncpg.Connection, live: str, name: str) -> list[str]:
    """What differs between the live read models and the shadow's; empty when they are equal."""
    have = await table_digests(conn, live, name)
    rebuilt = await table_digests(conn, SHADOW_SCHEMA, name)
    return [
        f"{table}: live {have[table]}, replayed {rebuilt[table]}"
        for table in TABLES
        if have[table] != rebuilt[table]
    ]
