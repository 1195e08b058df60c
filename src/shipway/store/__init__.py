"""The metadata store: SQLite by default, PostgreSQL when configured."""

from shipway.store.store import Store, Transaction, utc, utcnow

__all__ = ["Store", "Transaction", "utc", "utcnow"]
