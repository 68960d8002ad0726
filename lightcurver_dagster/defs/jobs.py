"""Jobs: the per-frame chain, launched by the raw-frames sensor over a range of new frames."""

import dagster as dg

from lightcurver_dagster.defs.groups import PER_FRAME

per_frame_job = dg.define_asset_job(
    "per_frame_job",
    selection=dg.AssetSelection.groups(PER_FRAME),
    description="Every per-frame asset for a frame or a range of frames (one process for the range).",
)
