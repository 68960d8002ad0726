"""Jobs: the start of the per-frame chain, launched by the raw-frames sensor over new frames."""

import dagster as dg

from lightcurver_dagster.defs.per_frame.calibrated_frame import calibrated_frame
from lightcurver_dagster.defs.per_frame.plate_solution import plate_solution

INGESTED = (calibrated_frame.key, plate_solution.key)
"""The per-frame assets that need nothing from other frames: the raw-frames sensor's runs. Its run
requests name them (``asset_selection``) so that the automation sees that such a run made the plate
solution together with its calibrated frame, and does not solve the frame again."""

per_frame_job = dg.define_asset_job(
    "per_frame_job",
    selection=dg.AssetSelection.assets(*INGESTED),
    description=(
        "The per-frame assets that need nothing from other frames, for a frame or a range of frames "
        "(one process for the range); the later per-frame assets follow by automation."
    ),
)
