"""Asset group names (the per-frame chain, the all-frames assets)."""

PER_FRAME = "per_frame"
ALL_FRAMES = "all_frames"
