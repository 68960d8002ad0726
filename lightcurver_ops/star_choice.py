"""Which reference stars a stage uses in a frame (lightcurver's ``stars_to_use_*`` and
``stars_to_exclude_*`` keys), shared by the PSF and the normalisation stages."""

from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_NEAREST = 10
"""lightcurver's choice when ``stars_to_use_*`` is null: the 10 stars nearest to the ROI."""


def choose_stars(
    stars: Sequence[Mapping[str, Any]],
    available: set[str],
    use: int | Sequence[str] | None,
    exclude: Sequence[str] | None,
) -> list[Mapping[str, Any]]:
    """The stars of a frame a stage should use, nearest to the ROI first.

    Parameters
    ----------
    stars : sequence of mappings
        The reference-star set (``name``, ``gaia_id``, ``distance_to_roi_arcsec``).
    available : set of str
        Gaia ids of the stars with a stamp in this frame.
    use : int, list of names or None
        None: the 10 nearest available; N: the N nearest available; names: exactly those.
    exclude : list of names or None
        Names never used (they take precedence over ``use``).
    """
    excluded = set(exclude or ())
    candidates = sorted(
        (star for star in stars if star["gaia_id"] in available and star["name"] not in excluded),
        key=lambda star: star["distance_to_roi_arcsec"],
    )
    if use is None or isinstance(use, int):
        return candidates[: DEFAULT_NEAREST if use is None else use]
    wanted = set(use)
    return [star for star in candidates if star["name"] in wanted]


def requested_count(use: int | Sequence[str] | None) -> int:
    """How many stars ``stars_to_use_*`` asks for (at most; a frame may have fewer)."""
    if use is None:
        return DEFAULT_NEAREST
    return use if isinstance(use, int) else len(use)


def star_set_label(names: Sequence[str]) -> str:
    """lightcurver's ``psf_ref`` made unambiguous: ``psf_a_b_ab`` (it joined names without a
    separator, so {a, bc} and {ab, c} collided)."""
    return "psf_" + "_".join(sorted(names))
