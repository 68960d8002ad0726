"""The code location: every definition under ``defs/`` with the resources built in one place."""

import dagster as dg

from lightcurver_dagster import defs as defs_package
from lightcurver_dagster.defs.resources import build_resources


def build_definitions(config_path: str | None = None) -> dg.Definitions:
    """All definitions; ``config_path`` defaults to the ``LIGHTCURVER_CONFIG`` environment variable.

    Runs execute their steps in the run's own process: a run batches frames for one or a few
    assets whose steps follow one another, a process per step cost 4 s of the 11 s of a short
    run, and JAX steps keep one device context and compilation cache. Parallelism comes from
    concurrent runs (the run queue's limits).
    """
    return dg.load_definitions_from_package_module(
        defs_package, resources=build_resources(config_path), executor=dg.in_process_executor
    )


defs = build_definitions()
