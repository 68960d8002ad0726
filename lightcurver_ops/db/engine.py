"""Engine creation and automatic, idempotent schema migration of the science database."""

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 60.0
_PG_MIGRATION_LOCK_ID = 7_349_112_201  # arbitrary, constant: serialises concurrent upgrades
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _plain(row: Any) -> Any:
    """A row of statement parameters with numpy scalars replaced by their Python values."""
    if isinstance(row, dict):
        return {key: value.item() if isinstance(value, np.generic) else value for key, value in row.items()}
    return type(row)(value.item() if isinstance(value, np.generic) else value for value in row)


def _plain_parameters(_connection, _cursor, statement, parameters, _context, _executemany):
    """Numpy scalars reach the driver as Python values. Science code hands them over everywhere (an
    MJD from astropy, a median), and the drivers mangle them: psycopg2 writes ``repr(value)``,
    ``np.float64(...)`` under numpy 2, into the SQL; sqlite3 stores a ``numpy.bool_`` as bytes.

    ``parameters`` is one row (a dict, or a tuple of values) or a list of rows; a bulk insert of many
    rows in one statement arrives as one flattened dict, whatever the executemany flag says.
    """
    if isinstance(parameters, list):
        return statement, [_plain(row) for row in parameters]
    return statement, _plain(parameters)


def create_science_engine(url: str) -> Engine:
    """A new engine for ``url``: SQLite gets WAL, a busy timeout and foreign keys.

    The folder of a SQLite file must exist: it is the work directory, which is never created here.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not Path(database).parent.is_dir():
            raise FileNotFoundError(f"science database {database}: folder {Path(database).parent} is missing")
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "before_cursor_execute", _plain_parameters, retval=True)
    return engine


def alembic_config(connection: Connection) -> Config:
    """Alembic configuration running this package's migrations on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migration_lock(engine: Engine, connection: Connection) -> Iterator[None]:
    """Serialise upgrades across processes: an advisory lock (PostgreSQL) or a lock file (SQLite)."""
    if engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK_ID})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK_ID})
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migration-lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Upgrade the database to the head revision; a no-op when it is already there."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    with engine.connect() as connection, _migration_lock(engine, connection):
        connection.commit()
        command.upgrade(alembic_config(connection), "head")
        connection.commit()


def open_science_database(url: str) -> Engine:
    """The process-wide engine for ``url``, migrated to the head revision on first use."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_science_engine(url)
            migrate(engine)
            _engines[url] = engine
        return engine
