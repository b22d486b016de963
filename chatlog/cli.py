"""The `chatlog` command: one subcommand per process of the system."""

import typer

app = typer.Typer(
    name="chatlog",
    help="Durable, consistent chat history for bots.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Durable, consistent chat history for bots: ingest, project, query."""
