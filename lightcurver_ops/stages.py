"""The stages that can eliminate a frame, in pipeline order (named like the assets).

A frame eliminated by one stage is skipped by every later stage, and re-evaluated by that stage
and the ones before it when they run again; ``frames.eliminated_stage`` records which one it was.
"""

from collections.abc import Mapping
from typing import Any

CALIBRATION = "calibrated_frame"
PLATE_SOLUTION = "plate_solution"
FOOTPRINTS = "footprints"
CUTOUTS = "cutouts"
PSF = "psf_model"
STAR_FLUXES = "star_fluxes"
ORDER = (CALIBRATION, PLATE_SOLUTION, FOOTPRINTS, CUTOUTS, PSF, STAR_FLUXES)


def eliminated_before(frame: Mapping[str, Any], stage: str) -> str | None:
    """The reason a frame is out before ``stage`` runs (eliminated by an earlier stage), else None."""
    if not frame.get("eliminated"):
        return None
    by = frame.get("eliminated_stage") or CALIBRATION
    if ORDER.index(by) < ORDER.index(stage):
        return f"eliminated by {by}: {frame.get('comment')}"
    return None


def elimination(stage: str, reason: str | None) -> dict[str, Any]:
    """The ``frames`` columns a stage writes: eliminated with ``reason``, or cleared when None."""
    if reason is None:
        return {"eliminated": 0, "comment": None, "eliminated_stage": None}
    return {"eliminated": 1, "comment": reason, "eliminated_stage": stage}
