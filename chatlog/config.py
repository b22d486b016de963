"""Settings of `chatlog dev` and `chatlog demo` (the services' own live beside them)."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class DevSettings(BaseSettings):
    """Where `chatlog dev` keeps its embedded servers' data (`CHATLOG_DATA_DIR`)."""

    model_config = SettingsConfigDict(
        env_prefix="CHATLOG_", env_file=".env", extra="ignore", use_attribute_docstrings=True
    )

    data_dir: Path = Path(".chatlog")
    """Folder of the embedded NATS and PostgreSQL data and the development secrets."""
