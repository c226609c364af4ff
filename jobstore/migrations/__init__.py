"""Alembic migrations of Stationsync's schema."""
