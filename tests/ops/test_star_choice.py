"""Choosing a frame's stars per lightcurver's stars_to_use / stars_to_exclude keys."""

import pytest

from lightcurver_ops.star_choice import choose_stars, requested_count, star_set_label

STARS = [
    {"name": name, "gaia_id": str(index), "distance_to_roi_arcsec": float(10 * index)}
    for index, name in enumerate("abcdefghijklmn")
]
AVAILABLE = {star["gaia_id"] for star in STARS} - {"2"}  # star c has no stamp in this frame


def _names(chosen):
    return "".join(star["name"] for star in chosen)


@pytest.mark.parametrize(
    ("use", "exclude", "expected"),
    [
        (None, None, "abdefghijk"),  # the 10 nearest with a stamp
        (3, None, "abd"),
        (3, ["a"], "bde"),
        (["a", "c", "e"], None, "ae"),  # c has no stamp here
        (["a", "c", "e"], ["e"], "a"),  # exclusions win
    ],
)
def test_choose_stars(use, exclude, expected):
    assert _names(choose_stars(STARS, AVAILABLE, use, exclude)) == expected


def test_star_set_label_is_unambiguous():
    assert star_set_label(["bc", "a"]) != star_set_label(["ab", "c"])
    assert star_set_label(["b", "a"]) == "psf_a_b"


def test_requested_count():
    assert (requested_count(None), requested_count(4), requested_count(["a", "b"])) == (10, 4, 2)
