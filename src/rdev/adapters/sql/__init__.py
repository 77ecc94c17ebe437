"""SQL storage for SQLite and PostgreSQL through SQLAlchemy Core, with Alembic migrations."""
