"""Storage backends behind one contract (``Store``), chosen by the ``DATABASE_URL`` scheme.

``sqlite:///path`` is the embedded default; ``postgresql://`` (or ``postgres://``) is for
deployments that outgrow one host. Only the packages under this one know SQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from jobqueue.errors import ConfigError
from jobqueue.settings import Settings
from jobqueue.storage.base import EventListener, Store

__all__ = ["EventListener", "Store", "open_store"]


@asynccontextmanager
async def open_store(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Store]:
    """Open the store ``settings.database_url`` names (applying pending migrations unless
    ``migrate`` is False) and close it on exit."""
    if settings.backend == "postgresql":
        try:
            from jobqueue.storage.postgres.store import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"DATABASE_URL is a PostgreSQL URL but its driver is missing ({exc.name}): "
                "pip install 'jobqueue[postgres]'"
            ) from None

        async with PostgresStore.open(settings) as pg_store:
            if migrate:
                await pg_store.migrate()
            yield pg_store
        return
    from jobqueue.storage.sqlite.store import SQLiteStore

    async with SQLiteStore.open(settings) as sqlite_store:
        if migrate:
            await sqlite_store.migrate()
        yield sqlite_store
