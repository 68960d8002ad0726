"""The code location: every definition under ``defs/`` with the resources built in one place."""

import dagster as dg

from lightcurver_dagster import defs as defs_package
from lightcurver_dagster.defs.resources import build_resources


def build_definitions(config_path: str | None = None) -> dg.Definitions:
    """All definitions; ``config_path`` defaults to the ``LIGHTCURVER_CONFIG`` environment variable."""
    return dg.load_definitions_from_package_module(defs_package, resources=build_resources(config_path))


defs = build_definitions()
