"""The code location: every definition under ``defs/`` with the resources built in one place."""

import dagster as dg

from lightcurver_dagster import defs as defs_package
from lightcurver_dagster.defs.resources import build_resources


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_definitions_from_package_module(defs_package, resources=build_resources())
