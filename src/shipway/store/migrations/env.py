"""Alembic environment: Shipway passes the connection in; there is no alembic.ini."""

from alembic import context

from shipway.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
