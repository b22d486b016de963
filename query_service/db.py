"""The database: the SQLAlchemy engine of the API, and schema migrations with Alembic."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from query_service.config import to_asyncpg_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An async engine on `url` (`postgresql://...`; the asyncpg driver is added)."""
    return create_async_engine(to_asyncpg_url(url), pool_size=pool_size, pool_pre_ping=False)


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
