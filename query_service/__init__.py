"""Projects events into PostgreSQL read models and serves chat history over HTTP."""
