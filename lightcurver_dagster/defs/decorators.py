"""The two kinds of asset of this project, declared in one place.

Per-frame assets are partitioned by frame and batch a range of frames into one run (one process,
so JAX work can be batched); all-frames assets are unpartitioned and read every frame.
"""

from collections.abc import Callable
from typing import Any

import dagster as dg

from lightcurver_dagster.defs.groups import ALL_FRAMES, PER_FRAME
from lightcurver_dagster.defs.partitions import frames_partitions

ACCELERATOR = "accelerator"
"""Concurrency pool of the JAX-heavy assets (one GPU: limit 1), and value of their ``DEVICE_TAG``."""
DEVICE_TAG = "lightcurver/device"
"""Tag of the assets that run on the accelerator; the automation tags their runs with it, so that the
run queue's tag limit (``deploy/dagster.yaml``) keeps one such run per accelerator."""


def _placed(accelerator: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the accelerator's pool and tag when ``accelerator``."""
    if not accelerator:
        return kwargs
    return kwargs | {"pool": ACCELERATOR, "tags": {**kwargs.get("tags", {}), DEVICE_TAG: ACCELERATOR}}


def per_frame_asset(*, accelerator: bool = False, **kwargs: Any) -> Callable[..., dg.AssetsDefinition]:
    """``@dg.asset`` partitioned by frame, single-run backfills, in the per-frame group; in the
    accelerator pool when ``accelerator``."""
    return dg.asset(
        partitions_def=frames_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=PER_FRAME,
        **_placed(accelerator, kwargs),
    )


BASELINE_TAG = "lightcurver/baseline"
"""Tag of the all-frames assets whose per-frame increments (assets reading them) must all re-run
when they are rebuilt: ``star_reference_fluxes``, ``roi_model``."""


def all_frames_asset(*, accelerator: bool = False, **kwargs: Any) -> Callable[..., dg.AssetsDefinition]:
    """``@dg.asset`` over all frames (unpartitioned), in the all-frames group; in the accelerator
    pool when ``accelerator``."""
    return dg.asset(group_name=ALL_FRAMES, **_placed(accelerator, kwargs))
