"""Dagster orchestration of lightcurver_ops: assets, partitions, sensors, resources, automation.

Parallelism comes from Dagster (frames batched per run, runs and steps in parallel processes), so
OpenMP libraries (astroscrappy) run single-threaded in each process unless told otherwise: their
default of one thread per core oversubscribes the CPUs, measured up to 100x slower under load.
"""

import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

# Deliberate uses of Dagster APIs marked beta or preview (``backfill_policy``, loading definitions
# from the ``defs`` package), said once here rather than in every process's log.
warnings.filterwarnings("ignore", message=r".*(backfill_policy|load_definitions_from).*is currently in")
