"""SQLite: the embedded default backend."""
