"""End-to-end tests run both services: they borrow the query service's fixtures."""

from tests.query_service.conftest import client, database, query_settings

__all__ = ["client", "database", "query_settings"]
