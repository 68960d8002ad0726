"""Science database: migrations, schema, idempotent writes — on SQLite and on real PostgreSQL."""

import threading

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from lightcurver_ops.db.engine import (
    alembic_config,
    create_science_engine,
    current_revision,
    head_revision,
    migrate,
)
from lightcurver_ops.db.frames import (
    RawFileRecord,
    frame_with_same_content,
    raw_file_for,
    register_raw_files,
    registered_raw_files,
    upsert_frame,
)
from lightcurver_ops.db.psfs import psf_chi2_values, replace_psf
from lightcurver_ops.db.schema import frames, metadata, raw_files

LIGHTCURVER_TABLES = {
    "frames",
    "footprints",
    "combined_footprint",
    "stars",
    "catalog_star_photometry",
    "stars_in_frames",
    "PSFs",
    "star_flux_in_frame",
    "normalization_coefficients",
    "absolute_zeropoints",
}


@pytest.fixture
def engine(database_url):
    engine = create_science_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_migration_creates_lightcurver_tables_and_matches_schema(engine):
    names = set(inspect(engine).get_table_names())
    assert LIGHTCURVER_TABLES | {"raw_files", "alembic_version"} <= names
    frame_columns = {column["name"] for column in inspect(engine).get_columns("frames")}
    assert {
        "partition_key",
        "seeing_pixels",
        "sky_level_electron_per_second",
        "angle_to_north",
    } <= frame_columns
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert current_revision(engine) == head_revision()


def test_migration_is_idempotent_and_keeps_data(engine):
    with engine.begin() as connection:
        upsert_frame(connection, {"partition_key": "f1", "mjd": 60000.0})
    migrate(engine)
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(frames)).scalar_one() == 1


def test_concurrent_first_migrations_do_not_collide(database_url):
    engines = [create_science_engine(database_url) for _ in range(3)]
    errors: list[BaseException] = []

    def upgrade(engine):
        try:
            migrate(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(current_revision(e) == head_revision() for e in engines)
    for e in engines:
        e.dispose()


def test_frame_upsert_replaces_and_keeps_id(engine):
    with engine.begin() as connection:
        first = upsert_frame(connection, {"partition_key": "f1", "mjd": 60000.0, "seeing_pixels": 3.0})
        other = upsert_frame(connection, {"partition_key": "f2", "mjd": 60001.0, "seeing_pixels": 4.0})
    with engine.begin() as connection:
        again = upsert_frame(connection, {"partition_key": "f1", "mjd": 60000.0, "seeing_pixels": 3.5})
    assert again == first != other
    with engine.connect() as connection:
        rows = connection.execute(select(frames.c.partition_key, frames.c.seeing_pixels)).all()
        assert sorted(rows) == [("f1", 3.5), ("f2", 4.0)]
        eliminated = connection.execute(select(frames.c.eliminated)).scalars().all()
    assert eliminated == [0, 0]  # server default of lightcurver's schema


def test_raw_file_registry(engine):
    records = [RawFileRecord("a", "/raw/a.fits", 10, 1), RawFileRecord("b", "/raw2/a.fits", 12, 2)]
    with engine.begin() as connection:
        register_raw_files(connection, records, registered_mjd=60000.0)
        register_raw_files(connection, [RawFileRecord("a", "/raw/a.fits", 11, 5)], registered_mjd=60001.0)
    with engine.connect() as connection:
        registry = registered_raw_files(connection)
        assert registry["/raw/a.fits"] == RawFileRecord("a", "/raw/a.fits", 11, 5)
        assert raw_file_for(connection, "b").path == "/raw2/a.fits"
        assert raw_file_for(connection, "zzz") is None


def test_numpy_scalars_are_written_as_their_values(engine):
    """astropy and numpy hand over numpy scalars (an MJD, a median); psycopg2 alone would write
    ``np.float64(...)`` into the SQL under numpy 2, sqlite3 a ``numpy.bool_`` as bytes."""
    with engine.begin() as connection:
        register_raw_files(connection, [RawFileRecord("a", "/raw/a.fits", 10, 1)], np.float64(61368.3))
        upsert_frame(
            connection,
            {
                "partition_key": "a",
                "mjd": np.float64(61368.3),
                "seeing_pixels": np.float32(3.25),
                "eliminated": np.int64(1),
                "exptime": np.float64("nan"),
            },
        )
    with engine.connect() as connection:
        row = connection.execute(select(frames)).mappings().one()
        assert (row["mjd"], row["seeing_pixels"], row["eliminated"]) == (61368.3, 3.25, 1)
        assert row["exptime"] is None or np.isnan(row["exptime"])
        connection.execute(text("CREATE TEMPORARY TABLE flags (flag BOOLEAN, value FLOAT)"))
        connection.execute(text("INSERT INTO flags VALUES (:flag, 0)"), {"flag": np.bool_(True)})
        many = [{"flag": False, "value": np.float64(v)} for v in (1.5, 2.5)]
        connection.execute(text("INSERT INTO flags VALUES (:flag, :value)"), many)
        rows = connection.execute(text("SELECT flag, value FROM flags ORDER BY value")).all()
        assert [tuple(row) for row in rows] == [(1, 0.0), (0, 1.5), (0, 2.5)]
    with engine.begin() as connection:  # many rows in one INSERT ... VALUES (SQLAlchemy's bulk path)
        rows = [
            {"partition_key": f"k{i}", "path": f"/raw/{i}", "size_bytes": np.int64(i)}
            | {"mtime_ns": np.int64(i), "registered_mjd": np.float64(61000 + i)}
            for i in range(3)
        ]
        connection.execute(raw_files.insert(), rows)
        total = select(func.sum(raw_files.c.size_bytes)).where(raw_files.c.partition_key.like("k%"))
        assert connection.execute(total).scalar_one() == 3


def test_duplicate_content_lookup_ignores_eliminated_frames(engine):
    with engine.begin() as connection:
        upsert_frame(connection, {"partition_key": "f1", "raw_sha256": "abc", "eliminated": 1})
        upsert_frame(connection, {"partition_key": "f2", "raw_sha256": "abc", "eliminated": 0})
        assert frame_with_same_content(connection, "abc", "f3") == "f2"
        assert frame_with_same_content(connection, "abc", "f2") is None


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path):
    engine = create_science_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() >= 30000


def test_sqlite_in_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        create_science_engine(f"sqlite:///{tmp_path / 'no' / 'db.sqlite3'}")


def test_database_from_an_older_revision_upgrades_keeping_its_rows(database_url):
    engine = create_science_engine(database_url)
    with engine.connect() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.commit()
    with engine.begin() as connection:
        upsert_frame(connection, {"partition_key": "old", "mjd": 59000.0})
    assert current_revision(engine) == "0001"
    migrate(engine)
    assert current_revision(engine) == head_revision()
    assert {"frame_wcs", "star_sets"} <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        assert connection.execute(select(frames.c.mjd)).scalars().all() == [59000.0]
    engine.dispose()


def test_psf_rows_are_replaced_per_frame_and_star_set(engine):
    with engine.begin() as connection:
        frame_id = upsert_frame(connection, {"partition_key": "f1"})
        replace_psf(connection, frame_id, 7, {"psf_ref": "psf_a_b", "chi2": 1.2, "subsampling_factor": 2})
        replace_psf(connection, frame_id, 7, {"psf_ref": "psf_a_c", "chi2": 1.0, "subsampling_factor": 2})
        replace_psf(connection, frame_id, 8, {"psf_ref": "psf_a", "chi2": 0.9, "subsampling_factor": 2})
        assert psf_chi2_values(connection, 7) == {frame_id: 1.0}
        replace_psf(connection, frame_id, 8, None)
        assert psf_chi2_values(connection, 8) == {}
