"""The database: the API's connection pool, and schema migrations with Alembic."""

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from query_service.config import to_asyncpg_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


async def create_pool(dsn: str, *, size: int) -> asyncpg.Pool:
    """A pool of up to `size` connections to `dsn`, opened on demand.

    No connection is opened here, so the API starts (and says it is not ready) while the database
    is down. Released connections are not reset: the API runs single statements outside any
    transaction and never changes a session's state, so asyncpg's reset query would only add a
    round trip to every read.
    """
    return await asyncpg.create_pool(dsn, min_size=0, max_size=size, reset=_keep)


async def _keep(_: asyncpg.Connection) -> None:
    """Nothing to reset (see `create_pool`)."""


def alembic_config(url: str) -> Config:
    """Alembic's config for the migrations shipped in this package, against `url`."""
    url = to_asyncpg_url(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read a `%` in a password as a reference.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` to `revision` (blocking: it runs its own event loop)."""
    command.upgrade(alembic_config(url), revision)


async def migrate_async(url: str, revision: str = "head") -> None:
    """`migrate` from inside a running event loop (Alembic's env runs a loop of its own)."""
    await asyncio.to_thread(migrate, url, revision)
