"""lrtower's alembic migrations (importable as `lrtower_server.migrations`)."""
