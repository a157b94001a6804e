"""Alembic environment of the key store (run through cdp.db.migrate, never standalone)."""

from alembic import context

from cdp.crypto.keystore_tables import keystore_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=keystore_metadata,
    version_table="alembic_version_keystore",
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
