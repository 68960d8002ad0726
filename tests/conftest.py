"""Shared fixtures: science databases (SQLite file, real PostgreSQL on loopback), config files."""

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.postgres_server import PostgresServer, find_postgres_bin

REQUIRE_POSTGRES_ENV = "LIGHTCURVER_REQUIRE_POSTGRES"

HEADER_PARSER = textwrap.dedent(
    """
    def parse_header(header):
        return {"mjd": header["MJD-OBS"], "gain": header["GAIN"], "exptime": header["EXPTIME"],
                "filter": header.get("FILTER")}
    """
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started from the installed binaries, stopped after."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        if os.environ.get(REQUIRE_POSTGRES_ENV):
            pytest.fail("PostgreSQL server binaries not found (install postgresql)")
        pytest.skip("PostgreSQL server binaries not installed")
    server = PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty science database: a SQLite file, then a database on the PostgreSQL fixture."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'database.sqlite3'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write ``workdir/config.yaml`` (minimal keys plus overrides) and a header parser; returns the path."""

    def write(**overrides: Any) -> Path:
        workdir = tmp_path / "work"
        (workdir / "header_parser").mkdir(parents=True, exist_ok=True)
        (workdir / "header_parser" / "parse_header.py").write_text(HEADER_PARSER)
        (tmp_path / "raw").mkdir(exist_ok=True)
        values = {
            "workdir": str(workdir),
            "raw_dirs": [str(tmp_path / "raw")],
            "ROI": {"TARGET": {"coordinates": [42.2031, 19.22528]}},
        } | overrides
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    return write
