"""The raw-frames sensor: new telescope files become frame partitions and a run, unattended."""

import dagster as dg

from lightcurver_dagster.defs.automation import interval_seconds
from lightcurver_dagster.defs.jobs import per_frame_job
from lightcurver_dagster.defs.partitions import frames_partitions
from lightcurver_dagster.defs.resources import LightcurverConfigResource, ScienceDatabase
from lightcurver_dagster.frame_registry import register_frames

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
SENSOR_INTERVAL_ENV_VAR = "LIGHTCURVER_SENSOR_INTERVAL_SECONDS"
"""Seconds between scans of the raw directories (default 30)."""


def range_run_tags(first: str, last: str) -> dict[str, str]:
    """Tags making a run cover the partitions ``first`` .. ``last`` (insertion order)."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


@dg.sensor(
    job=per_frame_job,
    minimum_interval_seconds=interval_seconds(SENSOR_INTERVAL_ENV_VAR),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def raw_frames_sensor(
    context: dg.SensorEvaluationContext,
    lightcurver_config: LightcurverConfigResource,
    science_database: ScienceDatabase,
) -> dg.SensorResult | dg.SkipReason:
    """Watches the config's ``raw_dirs`` for ``files_match_pattern``. A file is taken once it has not
    changed for ``ingest_settle_seconds``; each tick registers at most ``ingest_max_frames_per_run``
    new frames as partitions and launches one run over them; a raw file whose content changed
    re-runs its own partition."""
    config = lightcurver_config.load()
    plan = register_frames(
        context.instance,
        science_database.engine,
        config,
        settle_seconds=config.ingest_settle_seconds,
        max_frames=config.ingest_max_frames_per_run,
    )
    waiting = f"{plan.waiting} still being written, {plan.deferred} left for the next tick"
    if not plan.new and not plan.changed:
        return dg.SkipReason(f"no new or changed raw files ({waiting})")
    run_requests = [
        dg.RunRequest(run_key=f"{record.partition_key}@{record.mtime_ns}", partition_key=record.partition_key)
        for record in plan.changed
    ]
    new_keys = [record.partition_key for record in plan.new]
    if new_keys:
        newest = max(record.mtime_ns for record in plan.new)
        run_requests.append(
            dg.RunRequest(
                run_key=f"{new_keys[0]}..{new_keys[-1]}@{newest}",
                tags=range_run_tags(new_keys[0], new_keys[-1]),
            )
        )
    context.log.info(f"{len(new_keys)} new and {len(plan.changed)} changed raw files; {waiting}")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[frames_partitions.build_add_request(new_keys)] if new_keys else [],
    )
