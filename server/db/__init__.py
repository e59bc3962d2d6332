"""The data layer: tables (SQLAlchemy Core), the engine for SQLite and PostgreSQL, migrations."""
