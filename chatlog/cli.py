"""The `chatlog` command: one subcommand per process of the system."""

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from query_service.config import QuerySettings

app = typer.Typer(
    name="chatlog",
    help="Durable, consistent chat history for bots.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Durable, consistent chat history for bots: ingest, project, query."""


def _query_settings() -> "QuerySettings":
    from query_service.config import QuerySettings  # noqa: PLC0415 - load a service only when run

    settings = QuerySettings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


@app.command()
def migrate() -> None:
    """Bring the read-model schema in CHATLOG_DATABASE_URL to the latest version."""
    from query_service.db import migrate as upgrade  # noqa: PLC0415

    settings = _query_settings()
    upgrade(settings.database_url)
    typer.echo("read-model schema is up to date")


@app.command()
def project() -> None:
    """Run the projector: apply the event stream to the read models, in batches."""
    from query_service.main import run_projector  # noqa: PLC0415

    settings = _query_settings()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_projector(settings))


@app.command()
def query() -> None:
    """Serve the chat-history HTTP API on CHATLOG_QUERY_PORT."""
    import uvicorn  # noqa: PLC0415

    from query_service.main import create_app  # noqa: PLC0415

    settings = _query_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.query_host,
        port=settings.query_port,
        access_log=False,
        log_level=settings.log_level.lower(),
    )
