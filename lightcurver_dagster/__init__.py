"""Dagster orchestration of lightcurver_ops: assets, partitions, sensors, resources, automation.

Parallelism comes from Dagster (frames batched per run, runs and steps in parallel processes), so
OpenMP libraries (astroscrappy) run single-threaded in each process unless told otherwise: their
default of one thread per core oversubscribes the CPUs, measured up to 100x slower under load.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
