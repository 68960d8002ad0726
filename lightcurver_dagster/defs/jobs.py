"""Jobs: the start of the per-frame chain, launched by the raw-frames sensor over new frames."""

import dagster as dg

from lightcurver_dagster.defs.groups import ALL_FRAMES, PER_FRAME

per_frame_job = dg.define_asset_job(
    "per_frame_job",
    selection=dg.AssetSelection.groups(PER_FRAME) - dg.AssetSelection.groups(ALL_FRAMES).downstream(),
    description=(
        "The per-frame assets that need nothing from other frames, for a frame or a range of frames "
        "(one process for the range); the later per-frame assets follow by automation."
    ),
)
