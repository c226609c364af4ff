"""The root of Stationsync's exception tree and the storage layer's errors.

The root lives here, at the bottom layer, so that storage can raise errors the
whole application recognises without importing anything above it. The full
tree is drawn in ``core.errors``.
"""

from __future__ import annotations


class StationsyncError(Exception):
    """Root of every error Stationsync raises on purpose."""


class StorageError(StationsyncError):
    """The database could not be reached or refused an operation."""


class MigrationError(StorageError):
    """The schema could not be brought up to date."""
