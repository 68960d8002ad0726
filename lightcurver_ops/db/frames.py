"""Queries on ``raw_files`` (which file each partition comes from) and ``frames``."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from lightcurver_ops.db.schema import frames, raw_files
from lightcurver_ops.db.upsert import upsert


@dataclass(frozen=True)
class RawFileRecord:
    """A registered raw file: its partition key, absolute path, size (bytes) and mtime (ns)."""

    partition_key: str
    path: str
    size_bytes: int
    mtime_ns: int


def registered_raw_files(connection: Connection) -> dict[str, RawFileRecord]:
    """Every registered raw file, by absolute path."""
    rows = connection.execute(select(raw_files)).mappings()
    return {
        row["path"]: RawFileRecord(row["partition_key"], row["path"], row["size_bytes"], row["mtime_ns"])
        for row in rows
    }


def register_raw_files(
    connection: Connection, records: Iterable[RawFileRecord], registered_mjd: float
) -> None:
    """Insert or update registry rows (a changed file keeps its partition key)."""
    rows = [{**record.__dict__, "registered_mjd": registered_mjd} for record in records]
    upsert(connection, raw_files, rows, key=["partition_key"])


def raw_file_for(connection: Connection, partition_key: str) -> RawFileRecord | None:
    """The raw file registered under ``partition_key``, or None."""
    row = connection.execute(select(raw_files).where(raw_files.c.partition_key == partition_key)).mappings()
    found = row.first()
    if found is None:
        return None
    return RawFileRecord(found["partition_key"], found["path"], found["size_bytes"], found["mtime_ns"])


def upsert_frame(connection: Connection, row: Mapping[str, Any]) -> int:
    """Insert or replace the ``frames`` row of ``row['partition_key']``; returns its stable ``id``."""
    upsert(connection, frames, [row], key=["partition_key"])
    return connection.execute(
        select(frames.c.id).where(frames.c.partition_key == row["partition_key"])
    ).scalar_one()


def frame_with_same_content(connection: Connection, sha256: str, partition_key: str) -> str | None:
    """Partition key of another, non-eliminated frame imported from identical raw bytes, if any."""
    return (
        connection.execute(
            select(frames.c.partition_key)
            .where(frames.c.raw_sha256 == sha256)
            .where(frames.c.partition_key != partition_key)
            .where(frames.c.eliminated == 0)
            .order_by(frames.c.id)
        )
        .scalars()
        .first()
    )


def frame_row(connection: Connection, partition_key: str) -> dict[str, Any] | None:
    """The ``frames`` row of a partition as a dict, or None if the frame was never imported."""
    row = connection.execute(select(frames).where(frames.c.partition_key == partition_key)).mappings()
    found = row.first()
    return dict(found) if found is not None else None


def frame_rows(connection: Connection) -> list[dict[str, Any]]:
    """Every ``frames`` row as a dict, in time order."""
    return [dict(row) for row in connection.execute(select(frames).order_by(frames.c.mjd)).mappings()]
