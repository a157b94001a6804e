"""Storage: engines, column types, table models and migrations."""
