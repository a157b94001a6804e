"""Alembic environment of the data database (run through cdp.db.migrate, never standalone)."""

from alembic import context

from cdp.db.all_models import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
