"""Alembic environment shipped inside the package and run programmatically (`migrate.upgrade`)."""
