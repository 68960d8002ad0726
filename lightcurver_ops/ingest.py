"""Finding raw frames: directory scans, partition keys, and which files need (re)processing.

A raw file is identified by its absolute path. Its partition key is its stem made safe for
Dagster (``[A-Za-z0-9._-]``); when another file already owns that key (the same name in two raw
directories), a short hash of the path is appended, so keys never change once given.
"""

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lightcurver_ops.db.frames import RawFileRecord
from lightcurver_ops.errors import ConfigError

MAX_KEY_LENGTH = 120


@dataclass(frozen=True)
class RawFileStat:
    """A file found in a raw directory: absolute path, size (bytes), mtime (ns)."""

    path: str
    size_bytes: int
    mtime_ns: int


@dataclass
class IngestPlan:
    """What a scan found to do.

    Attributes
    ----------
    new : list of RawFileRecord
        Files never registered (or whose partition is missing), with their keys.
    changed : list of RawFileRecord
        Registered files whose size or mtime changed: their partitions are re-run.
    waiting : int
        Files skipped because they were modified less than the settle time ago.
    deferred : int
        Files left for a later scan because the batch was full.
    """

    new: list[RawFileRecord] = field(default_factory=list)
    changed: list[RawFileRecord] = field(default_factory=list)
    waiting: int = 0
    deferred: int = 0


def safe_partition_key(stem: str) -> str:
    """A Dagster-safe partition key from a file stem (no commas, pipes, slashes or spaces)."""
    key = re.sub(r"[^A-Za-z0-9._-]", "_", stem).strip(".") or "frame"
    return key[:MAX_KEY_LENGTH]


def _path_suffix(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:8]


def scan_raw_dirs(raw_dirs: Iterable[Path], pattern: str) -> list[RawFileStat]:
    """Files matching ``pattern`` (non-recursive) in each raw directory, sorted by path.

    Raises
    ------
    ConfigError
        If a raw directory does not exist.
    """
    found = []
    for directory in raw_dirs:
        if not directory.is_dir():
            raise ConfigError(f"raw_dirs: {directory} is not a directory")
        for path in directory.glob(pattern):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed between glob and stat
                continue
            if path.is_file():
                found.append(RawFileStat(str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda item: item.path)


def plan_ingest(
    scanned: Iterable[RawFileStat],
    registry: Mapping[str, RawFileRecord],
    known_partitions: set[str],
    *,
    now_ns: int,
    settle_seconds: float,
    max_frames: int,
) -> IngestPlan:
    """Decide which scanned files to register or re-run, oldest first, at most ``max_frames``.

    A file modified less than ``settle_seconds`` ago may still be being written: it waits.
    """
    plan = IngestPlan()
    taken = {record.partition_key for record in registry.values()} | known_partitions
    settled = []
    for item in scanned:
        if now_ns - item.mtime_ns < settle_seconds * 1e9:
            plan.waiting += 1
        else:
            settled.append(item)
    for item in sorted(settled, key=lambda s: (s.mtime_ns, s.path)):
        known = registry.get(item.path)
        unchanged = known is not None and (known.size_bytes, known.mtime_ns) == (
            item.size_bytes,
            item.mtime_ns,
        )
        if unchanged and known.partition_key in known_partitions:
            continue
        if len(plan.new) + len(plan.changed) >= max_frames:
            plan.deferred += 1
            continue
        if known is None:
            key = safe_partition_key(Path(item.path).stem)
            if key in taken:
                key = f"{key[: MAX_KEY_LENGTH - 9]}-{_path_suffix(item.path)}"
            taken.add(key)
        else:
            key = known.partition_key
        batch = plan.changed if known is not None and key in known_partitions else plan.new
        batch.append(RawFileRecord(key, item.path, item.size_bytes, item.mtime_ns))
    return plan
