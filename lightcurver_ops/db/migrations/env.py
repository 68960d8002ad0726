"""Alembic environment: runs on the connection handed over by ``lightcurver_ops.db.engine.migrate``."""

from alembic import context

from lightcurver_ops.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
