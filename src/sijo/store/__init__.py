"""Persistence: one database (SQLite by default, PostgreSQL by URL) for keys, batches and usage."""
