"""Registering raw files as frames: shared by the raw-frames sensor and the headless CLI."""

import time

import dagster as dg
from astropy.time import Time
from sqlalchemy import Engine

from lightcurver_dagster.defs.partitions import frames_partitions
from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.db.frames import register_raw_files, registered_raw_files
from lightcurver_ops.ingest import IngestPlan, plan_ingest, scan_raw_dirs


def register_frames(
    instance: dg.DagsterInstance,
    engine: Engine,
    config: LightcurverConfig,
    *,
    settle_seconds: float,
    max_frames: int,
) -> IngestPlan:
    """Scan the raw directories and record the next batch of new or changed files.

    The files of the plan are written to ``raw_files`` (their partition keys fixed there); adding
    the partitions to the instance is left to the caller (a sensor returns the request).
    """
    scanned = scan_raw_dirs(config.resolved_raw_dirs, config.files_match_pattern)
    with engine.connect() as connection:
        registry = registered_raw_files(connection)
    plan = plan_ingest(
        scanned,
        registry,
        set(instance.get_dynamic_partitions(frames_partitions.name)),
        now_ns=time.time_ns(),
        settle_seconds=settle_seconds,
        max_frames=max_frames,
    )
    if plan.new or plan.changed:
        with engine.begin() as connection:
            register_raw_files(connection, plan.new + plan.changed, registered_mjd=Time.now().mjd)
    return plan
