"""Tests of lightcurver_ops.cutouts against the simulator's truth and on small synthetic arrays."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lightcurver_ops import cutouts, frames
from lightcurver_ops.cutouts import Stamp
from lightcurver_ops.simulate import (
    FrameTruth,
    SimulationSpec,
    SimulationTruth,
    SourceTruth,
    simulate_dataset,
)

SPEC = SimulationSpec(nx=512, ny=512, n_frames=6, seed=1)
STAR_STAMP = 24  # the simulated config's stamp_size_stars
ROI_STAMP = 32
COSMICS = {"sigclip": 4.5, "sigfrac": 0.3, "objlim": 5.0}  # the simulated config's cosmics_masking_params


@dataclass(frozen=True)
class Frame:
    truth: FrameTruth
    image: np.ndarray
    wcs: WCS
    sky_level: float
    sky_rms: float
    bad_columns: np.ndarray
    bad_rows: np.ndarray

    @property
    def saturation(self) -> float:
        """Above-sky saturation level as a caller computes it from the header and the global sky.

        The 5 rms margin covers the sky gradient: a saturated pixel on brighter sky than the global
        level is lower than ``SATURATE * gain / exptime - sky_level`` in the sky-subtracted image.
        """
        return SPEC.saturation_adu * SPEC.gain / SPEC.exptime - self.sky_level - 5.0 * self.sky_rms

    def stamp(self, x: float, y: float, size: int = STAR_STAMP, **kwargs) -> Stamp:
        options = {
            "sky_rms": self.sky_rms,
            "exptime": SPEC.exptime,
            "saturation": self.saturation,
            "bad_columns": self.bad_columns,
            "bad_rows": self.bad_rows,
        } | kwargs
        return cutouts.extract_stamp(self.image, self.wcs, x, y, size, **options)


@pytest.fixture(scope="module")
def simulation(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationTruth, list[Frame]]:
    out = tmp_path_factory.mktemp("simulated")
    truth = simulate_dataset(out, SPEC)
    calibrated = []
    for frame in truth.frames:
        raw = frames.read_raw_frame(out / "raw" / frame.file_name)
        # 6 background boxes rather than the config's 3: sep's global rms is the median of the boxes'
        # rms, which include the sky gradient across a box; with 171-pixel boxes that inflates the rms
        # by up to 16% on these frames (2-4% with 6 boxes), and the noise map would be too high.
        cal = frames.calibrate_frame(
            raw,
            SPEC.gain,
            SPEC.exptime,
            n_boxes=6,
            mask_sources=False,
            threshold=2.0,
            min_area=20,
            saturation_adu=SPEC.saturation_adu,
        )
        columns, rows = cutouts.bad_lines(cal.image, cal.sky_rms)
        calibrated.append(Frame(frame, cal.image, WCS(cal.header), cal.sky_level, cal.sky_rms, columns, rows))
    return truth, calibrated


def position(source: SourceTruth, frame: Frame) -> tuple[float, float]:
    return source.x_pixels[frame.truth.index], source.y_pixels[frame.truth.index]


def in_frame(x: float, y: float, margin: float = 0.0) -> bool:
    return margin <= x <= SPEC.nx - 1 - margin and margin <= y <= SPEC.ny - 1 - margin


def windowed_centroid(data: np.ndarray, noise: np.ndarray, start: tuple[float, float], sigma: float):
    """Gaussian-windowed centroid (SExtractor's XWIN) iterated from ``start``, and its 1-sigma errors.

    Exact for symmetric PSFs; the errors are SExtractor's ``2 sqrt(sum w^2 noise^2 dx^2) / sum w data``.
    """
    yy, xx = np.indices(data.shape)
    cx, cy = start
    for _ in range(30):
        window = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        total = (window * data).sum()
        cx, cy = (window * data * xx).sum() / total, (window * data * yy).sum() / total
    errors = [2 * np.sqrt((window**2 * noise**2 * d**2).sum()) / total for d in (xx - cx, yy - cy)]
    return cx, cy, *errors


# --------------------------------------------------------------------------------------------------
# Bad lines


def test_bad_lines_find_the_simulated_bad_column_and_nothing_else(simulation):
    truth, calibrated = simulation
    for frame in calibrated:
        assert frame.bad_columns.tolist() == [truth.bad_column_x], frame.truth.index
        assert frame.bad_rows.tolist() == [], frame.truth.index


def synthetic_frame(seed: int = 0, shape: tuple[int, int] = (300, 400)) -> np.ndarray:
    """Sky-subtracted noise of rms 1 with a bright star crossing column 120 / row 150."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 1.0, shape)
    yy, xx = np.indices(shape)
    image += 5e4 / (2 * math.pi * 3.0**2) * np.exp(-((xx - 120.3) ** 2 + (yy - 150.6) ** 2) / (2 * 3.0**2))
    return image


def test_bad_lines_are_robust_to_a_bright_star():
    assert [v.tolist() for v in cutouts.bad_lines(synthetic_frame(), 1.0)] == [[], []]


def test_bad_lines_find_offset_noisy_and_dead_lines():
    image = synthetic_frame()
    rng = np.random.default_rng(1)
    image[:, 50] += 0.8  # hot column: 0.8 rms, 11 sigma of a 300-pixel median
    image[:, 200] = rng.normal(0.0, 1.6, image.shape[0])  # noisy column with a normal level
    image[:, 201] = 0.0  # dead column at the sky level: constant
    image[77, :] -= 0.8  # cold row
    image[12:40, 300] = np.nan  # NaN pixels are ignored
    image[:, 399] = np.nan  # an all-NaN column is not judged
    columns, rows = cutouts.bad_lines(image, 1.0)
    assert columns.tolist() == [50, 200, 201]
    assert rows.tolist() == [77]
    assert columns.dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": np.zeros(10), "rms": 1.0}, "2-D"),
        ({"image": np.zeros((2, 10)), "rms": 1.0}, "3x3"),
        ({"image": np.zeros((10, 10)), "rms": 0.0}, "rms"),
        ({"image": np.zeros((10, 10)), "rms": 1.0, "n_sigma": -1.0}, "n_sigma"),
    ],
)
def test_bad_lines_reject_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cutouts.bad_lines(**kwargs)


# --------------------------------------------------------------------------------------------------
# Stamp placement and WCS


@pytest.mark.parametrize(
    ("x", "y", "size", "origin"),
    [
        (10.2, 20.7, 5, (8, 19)),
        (10.5, 20.49, 5, (9, 18)),  # halves round up
        (10.2, 20.7, 24, (-2, 9)),  # even: the nearest pixel is stamp pixel [12, 12]
        (-0.4, 3.0, 1, (0, 3)),
    ],
)
def test_stamp_origin(x, y, size, origin):
    assert cutouts.stamp_origin(x, y, size) == origin


def isolated(source: SourceTruth, frame: Frame, sources: list[SourceTruth]) -> bool:
    """No source within 12 pixels, nor a brighter one within 25 (PSF wings), nor the ROI."""
    here = position(source, frame)
    if math.dist(here, frame.truth.roi_pixel) < 25:
        return False
    for other in sources:
        distance = math.dist(position(other, frame), here)
        if other is not source and (
            distance < 12 or (distance < 25 and other.flux_e_per_s > source.flux_e_per_s)
        ):
            return False
    return True


def test_stars_lie_within_half_a_pixel_of_the_stamp_centre(simulation):
    truth, calibrated = simulation
    high_pm_checked = set()
    n_checked = 0
    for frame in calibrated:
        sigma = frame.truth.seeing_fwhm_pixels / 2.3548
        for source in truth.sources:
            x, y = position(source, frame)
            if (
                source.kind not in {"star", "variable"}
                or source.flux_e_per_s < 50
                or not in_frame(x, y, margin=STAR_STAMP)
                or abs(x - truth.bad_column_x) < 8
                or not isolated(source, frame, truth.sources)
            ):
                continue
            stamp = frame.stamp(x, y, cosmics=COSMICS)
            c = STAR_STAMP // 2
            x0, y0 = stamp.origin
            assert abs(x - x0 - c) <= 0.5 and abs(y - y0 - c) <= 0.5
            assert stamp.position == (x, y)
            if stamp.mask[c - 8 : c + 9, c - 8 : c + 9].any():  # e.g. the simulator's hit next to a star
                continue
            # the star is really there: its centroid is at the true position
            cx, cy, ex, ey = windowed_centroid(stamp.data, stamp.noise, (c, c), sigma)
            if not (0 < ex <= 0.05 and 0 < ey <= 0.05):  # too faint for a sharp test
                continue
            assert abs(cx + x0 - x) < 0.03 + 5 * ex and abs(cy + y0 - y) < 0.03 + 5 * ey, (
                source.source_id,
                cx,
                cy,
            )
            n_checked += 1
            if math.hypot(source.pmra, source.pmdec) >= 50:
                high_pm_checked.add(source.source_id)
    assert n_checked >= 40
    assert len(high_pm_checked) >= 2  # the simulator's high-proper-motion stars, at their truth positions


def test_stamp_wcs_is_the_frame_wcs_shifted(simulation):
    truth, calibrated = simulation
    frame = calibrated[2]
    source = next(s for s in truth.sources if s.kind == "star" and in_frame(*position(s, frame), 20))
    x, y = position(source, frame)
    stamp = frame.stamp(x, y)
    stamp_wcs = WCS(fits.Header.fromstring(stamp.wcs_header))
    x0, y0 = stamp.origin
    np.testing.assert_array_equal(stamp_wcs.wcs.crpix, frame.wcs.wcs.crpix - [x0, y0])
    expected = frame.wcs.pixel_to_world_values([x, x0 - 3.0], [y, y0 + 30.0])
    got = stamp_wcs.pixel_to_world_values([x - x0, -3.0], [y - y0, 30.0])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_stamp_wcs_keeps_sip_distortion():
    header = fits.Header()
    header.update(
        CTYPE1="RA---TAN-SIP",
        CTYPE2="DEC--TAN-SIP",
        CRPIX1=50.0,
        CRPIX2=40.0,
        CRVAL1=42.0,
        CRVAL2=19.0,
        CD1_1=-6e-5,
        CD1_2=1e-6,
        CD2_1=1e-6,
        CD2_2=6e-5,
        A_ORDER=2,
        B_ORDER=2,
        A_2_0=2e-5,
        A_1_1=-1e-5,
        B_0_2=3e-5,
    )
    wcs = WCS(header)
    image = np.zeros((100, 120), dtype=np.float32)
    stamp = cutouts.extract_stamp(image, wcs, 90.3, 70.8, 11, sky_rms=1.0, exptime=10.0)
    stamp_wcs = WCS(fits.Header.fromstring(stamp.wcs_header))
    assert stamp_wcs.sip is not None
    x0, y0 = stamp.origin
    ii, jj = np.meshgrid(np.arange(11.0), np.arange(11.0))
    np.testing.assert_allclose(
        stamp_wcs.all_pix2world(ii.ravel(), jj.ravel(), 0),
        wcs.all_pix2world(ii.ravel() + x0, jj.ravel() + y0, 0),
        rtol=0,
        atol=1e-10,
    )


def test_stamps_at_the_frame_edge_are_nan_filled_and_masked(simulation):
    _, calibrated = simulation
    frame = calibrated[0]
    for x, y in [(2.3, 200.6), (509.7, 511.2), (-5.0, -7.0)]:
        stamp = frame.stamp(x, y, size=ROI_STAMP, cosmics=COSMICS)
        x0, y0 = stamp.origin
        xs, ys = np.arange(x0, x0 + ROI_STAMP), np.arange(y0, y0 + ROI_STAMP)
        inside = ((ys >= 0) & (ys < SPEC.ny))[:, None] & ((xs >= 0) & (xs < SPEC.nx))[None, :]
        assert 0 < inside.sum() < inside.size
        assert np.isnan(stamp.data[~inside]).all() and np.isnan(stamp.noise[~inside]).all()
        assert stamp.mask[~inside].all()
        sub = frame.image[max(y0, 0) : y0 + ROI_STAMP, max(x0, 0) : x0 + ROI_STAMP]
        np.testing.assert_array_equal(stamp.data[inside].reshape(sub.shape), sub)
        assert np.isfinite(stamp.noise[inside]).all()
        assert stamp.data.dtype == np.float32 and stamp.noise.dtype == np.float32 and stamp.mask.dtype == bool
    with pytest.raises(ValueError, match="does not overlap"):
        frame.stamp(-30.0, 100.0)


# --------------------------------------------------------------------------------------------------
# Masks


def cosmic_ray_step(frame: Frame, x: float, y: float) -> tuple[Stamp, np.ndarray, np.ndarray]:
    """The stamp with cosmic-ray masking, and the masks before and due to the cosmic-ray step."""
    without = frame.stamp(x, y)
    stamp = frame.stamp(x, y, cosmics=COSMICS)
    assert not (without.mask & ~stamp.mask).any()
    return stamp, without.mask, stamp.mask & ~without.mask


def test_cosmic_rays_in_star_stamps_are_masked_and_star_cores_are_not(simulation):
    truth, calibrated = simulation
    n_hit = n_flagged = n_cores = 0
    near_star_hits = 0
    for frame in calibrated:
        hits = {tuple(p) for p in frame.truth.cosmic_ray_pixels}
        stars = [s for s in truth.sources if in_frame(*position(s, frame), margin=-3)]
        centres = [(*position(s, frame), s) for s in stars]
        # stamps centred on the hits near stars as well, so hits are seen at every place in a stamp
        centres += [
            (float(hx), float(hy), None)
            for hx, hy in hits
            if any(math.dist(position(s, frame), (hx, hy)) < STAR_STAMP for s in stars)
        ]
        for x, y, source in centres:
            stamp, before, flagged = cosmic_ray_step(frame, x, y)
            x0, y0 = stamp.origin
            for hx, hy in hits:
                i, j = hx - x0, hy - y0
                if 0 <= i < STAR_STAMP and 0 <= j < STAR_STAMP and not before[j, i]:
                    n_hit += 1
                    n_flagged += bool(flagged[j, i])
                    near_star_hits += source is not None and source.source_id == (
                        frame.truth.cosmic_ray_near_star_source_id
                    )
            if source is None or source.kind not in {"star", "variable"}:
                continue
            c = STAR_STAMP // 2
            core = (slice(c - 1, c + 2), slice(c - 1, c + 2))
            hit_nearby = any(max(abs(hx - x0 - c), abs(hy - y0 - c)) <= 2 for hx, hy in hits)
            if before[core].any() or hit_nearby:  # saturated, or a real hit at the core
                continue
            n_cores += 1
            assert not flagged[core].any(), (frame.truth.index, source.source_id, source.g_mag)
    assert near_star_hits >= 2  # the simulator's hits next to a star
    assert n_hit >= 50 and n_cores >= 150
    assert n_flagged / n_hit >= 0.9, (n_flagged, n_hit)


def test_saturated_star_core_is_masked(simulation):
    truth, calibrated = simulation
    saturated = next(s for s in truth.sources if s.kind == "saturated")
    for frame in calibrated:
        x, y = position(saturated, frame)
        c = STAR_STAMP // 2
        core = (slice(c - 1, c + 2), slice(c - 1, c + 2))
        assert frame.stamp(x, y).mask[core].all(), frame.truth.index
        assert not frame.stamp(x, y, saturation=None).mask[core].any()


def test_saturation_mask_grows_by_one_pixel_across_the_stamp_edge():
    image = np.zeros((40, 40), dtype=np.float32)
    image[20, 25] = 100.0  # just outside a 9x9 stamp centred on (20, 20): x 16..24
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    stamp = cutouts.extract_stamp(image, wcs, 20.0, 20.0, 9, sky_rms=1.0, exptime=1.0, saturation=50.0)
    expected = np.zeros((9, 9), bool)
    expected[3:6, 8] = True
    np.testing.assert_array_equal(stamp.mask, expected)
    level = np.full(image.shape, 150.0)
    level[:, 23:] = 80.0  # a saturation map: the pixel is saturated only where the level is low
    stamp = cutouts.extract_stamp(image, wcs, 20.0, 20.0, 9, sky_rms=1.0, exptime=1.0, saturation=level)
    np.testing.assert_array_equal(stamp.mask, expected)


def test_bad_column_is_masked_in_stamps(simulation):
    truth, calibrated = simulation
    frame = calibrated[1]
    stamp = frame.stamp(truth.bad_column_x + 3.2, 250.0)
    column = truth.bad_column_x - stamp.origin[0]
    assert stamp.mask[:, column].all()
    assert not np.delete(stamp.mask, column, axis=1).any()


# --------------------------------------------------------------------------------------------------
# Noise map


def test_noise_map_matches_the_sky_noise(simulation):
    truth, calibrated = simulation
    rng = np.random.default_rng(5)
    for frame in calibrated:
        objects = [position(s, frame) for s in truth.sources] + [tuple(frame.truth.roi_pixel)]
        hits = np.array(frame.truth.cosmic_ray_pixels)
        ratios, noise_over_rms = [], []
        while len(ratios) < 12:
            x, y = rng.uniform(20, SPEC.nx - 21, 2)
            if (
                min(math.dist((x, y), o) for o in objects) < 40
                or abs(x - truth.bad_column_x) < 15
                or np.hypot(hits[:, 0] - x, hits[:, 1] - y).min() < 15
            ):
                continue
            stamp = frame.stamp(x, y, size=20, cosmics=COSMICS)
            good = ~stamp.mask
            ratios.append(stamp.data[good] / stamp.noise[good])
            noise_over_rms.append(stamp.noise[good] / frame.sky_rms)
        assert np.std(np.concatenate(ratios)) == pytest.approx(1.0, abs=0.1)
        assert np.median(np.concatenate(noise_over_rms)) == pytest.approx(1.0, abs=0.01)


def test_noise_map_formula_and_rms_map():
    image = np.zeros((30, 30))
    image[10:20, 10:20] = 4.0
    image[0:5, :] = -3.0
    rms = np.full(image.shape, 0.5)
    rms[:, 15:] = 1.0
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    stamp = cutouts.extract_stamp(image, wcs, 15.0, 15.0, 30, sky_rms=rms, exptime=100.0)
    expected = np.sqrt((100.0 * rms) ** 2 + np.maximum(100.0 * image, 0.0)) / 100.0
    np.testing.assert_allclose(stamp.noise, expected, rtol=1e-6)
    scalar = cutouts.extract_stamp(image, wcs, 15.0, 15.0, 30, sky_rms=0.5, exptime=100.0)
    np.testing.assert_allclose(scalar.noise[0:5], 0.5, rtol=1e-6)  # negative data add no photon noise


def stamp_arguments() -> dict:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    return {
        "image": np.zeros((50, 50)),
        "wcs": wcs,
        "x": 20.0,
        "y": 20.0,
        "size": 10,
        "sky_rms": 1.0,
        "exptime": 10.0,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": np.zeros((5, 5, 5))}, "image"),
        ({"wcs": None}, "wcs"),
        ({"x": float("nan")}, "x must"),
        ({"y": "3"}, "y must"),
        ({"size": 0}, "size"),
        ({"size": 10.0}, "size"),
        ({"sky_rms": -1.0}, "sky_rms"),
        ({"sky_rms": np.ones((5, 5))}, "sky_rms map"),
        ({"exptime": 0.0}, "exptime"),
        ({"saturation": float("inf")}, "saturation"),
        ({"bad_columns": [1.5]}, "bad_columns"),
        ({"bad_rows": [True]}, "bad_rows"),
        ({"cosmics": {"sigclip": 4.5, "gain": 2.0}}, "gain"),
        ({"cosmics": {"readnoise": 4.0}}, "readnoise"),
    ],
)
def test_extract_stamp_rejects_bad_arguments(change, message):
    with pytest.raises(ValueError, match=message):
        cutouts.extract_stamp(**(stamp_arguments() | change))


# --------------------------------------------------------------------------------------------------
# Files


@pytest.fixture(scope="module")
def frame_stamps(simulation) -> dict[str, Stamp]:
    truth, calibrated = simulation
    frame = calibrated[0]
    stars = [s for s in truth.sources if s.kind == "star" and in_frame(*position(s, frame), 5)][:4]
    stamps = {str(s.source_id): frame.stamp(*position(s, frame), cosmics=COSMICS) for s in stars}
    stamps["ROI"] = frame.stamp(*frame.truth.roi_pixel, size=ROI_STAMP, cosmics=COSMICS)
    stamps["edge"] = frame.stamp(1.6, 300.2)
    return stamps


ATTRS = {"mjd": 60249.21, "sky_rms": 0.31, "seeing_pixels": float("nan"), "filter": "r_sdss"}


def assert_same_stamps(got: dict[str, Stamp], expected: dict[str, Stamp]) -> None:
    assert sorted(got) == sorted(expected)
    for name, stamp in expected.items():
        for field in ("data", "noise", "mask"):
            value = getattr(got[name], field)
            assert value.dtype == getattr(stamp, field).dtype
            np.testing.assert_array_equal(value, getattr(stamp, field))
        assert got[name].wcs_header == stamp.wcs_header
        assert got[name].origin == stamp.origin and got[name].position == stamp.position
        assert all(type(v) is int for v in got[name].origin)


def test_frame_cutouts_round_trip_exactly(tmp_path, frame_stamps):
    path = tmp_path / "cutouts" / "frame_0001.h5"
    cutouts.write_frame_cutouts(path, frame_stamps, ATTRS, frame_shape=(512, 512))
    stamps, attrs, frame_shape = cutouts.read_frame_cutouts(path)
    assert_same_stamps(stamps, frame_stamps)
    assert frame_shape == (512, 512)
    assert attrs.keys() == ATTRS.keys() and attrs["filter"] == "r_sdss" and attrs["mjd"] == ATTRS["mjd"]
    assert math.isnan(attrs["seeing_pixels"])
    with h5py.File(path) as f:
        assert f["ROI/data"].compression == "gzip"


def test_reading_named_stamps_only(tmp_path, frame_stamps):
    path = tmp_path / "frame.h5"
    cutouts.write_frame_cutouts(path, frame_stamps, ATTRS, frame_shape=(512, 512))
    name = next(iter(frame_stamps))
    stamps, attrs, frame_shape = cutouts.read_frame_cutouts(path, names=[name, "not_in_the_file"])
    assert_same_stamps(stamps, {name: frame_stamps[name]})
    assert attrs.keys() == ATTRS.keys() and frame_shape == (512, 512)
    assert cutouts.read_frame_cutouts(path, names=[])[0] == {}
    with pytest.raises(ValueError, match="iterable of object names"):
        cutouts.read_frame_cutouts(path, names=name)


def test_rewriting_a_frame_file_replaces_it(tmp_path, frame_stamps):
    path = tmp_path / "frame.h5"
    cutouts.write_frame_cutouts(path, frame_stamps, ATTRS, frame_shape=(512, 512))
    cutouts.write_frame_cutouts(path, {"ROI": frame_stamps["ROI"]}, {"mjd": 1.0}, frame_shape=(100, 200))
    stamps, attrs, frame_shape = cutouts.read_frame_cutouts(path)
    assert_same_stamps(stamps, {"ROI": frame_stamps["ROI"]})
    assert attrs == {"mjd": 1.0} and frame_shape == (100, 200)
    assert os.listdir(tmp_path) == ["frame.h5"]  # no temporary file left


def test_failed_write_keeps_the_old_file(tmp_path, frame_stamps):
    path = tmp_path / "frame.h5"
    cutouts.write_frame_cutouts(path, frame_stamps, ATTRS, frame_shape=(512, 512))
    with pytest.raises(ValueError, match="object name"):
        cutouts.write_frame_cutouts(path, {"a/b": frame_stamps["ROI"]}, {}, frame_shape=(5, 5))
    assert sorted(cutouts.read_frame_cutouts(path)[0]) == sorted(frame_stamps)
    assert os.listdir(tmp_path) == ["frame.h5"]


@pytest.mark.parametrize(
    ("stamps", "attrs", "frame_shape", "message"),
    [
        ({"": None}, {}, (5, 5), "Stamp"),
        ({}, {"frame_shape": 1.0}, (5, 5), "attribute name"),
        ({}, {"flag": True}, (5, 5), "attribute 'flag'"),
        ({}, {"values": [1.0]}, (5, 5), "attribute 'values'"),
        ({}, {}, (5,), "frame_shape"),
        ({}, {}, (5, 0), "frame_shape"),
    ],
)
def test_write_frame_cutouts_rejects_bad_arguments(tmp_path, stamps, attrs, frame_shape, message):
    with pytest.raises(ValueError, match=message):
        cutouts.write_frame_cutouts(tmp_path / "f.h5", stamps, attrs, frame_shape=frame_shape)


def test_read_frame_cutouts_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        cutouts.read_frame_cutouts(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a cutouts file"):
        cutouts.read_frame_cutouts(tmp_path / "other.h5")


def test_stamp_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="square"):
        Stamp(np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((3, 4), bool), "", (0, 0), (1.0, 1.0))
    with pytest.raises(ValueError, match="mask"):
        Stamp(np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((3, 4), bool), "", (0, 0), (1.0, 1.0))


def test_export_regions_h5_has_lightcurver_layout(tmp_path, frame_stamps):
    first, second = tmp_path / "cutouts" / "frame_0001.h5", tmp_path / "cutouts" / "frame_0002.h5"
    cutouts.write_frame_cutouts(first, frame_stamps, ATTRS, frame_shape=(512, 400))
    cutouts.write_frame_cutouts(second, {"ROI": frame_stamps["ROI"]}, {}, frame_shape=(512, 512))
    out = tmp_path / "regions.h5"
    cutouts.export_regions_h5({"frames/frame_0001.fits": first, "frames/frame_0002.fits": second}, out)
    with h5py.File(out) as f:
        assert list(f) == ["frames"]
        assert sorted(f["frames"]) == ["frame_0001.fits", "frame_0002.fits"]
        group = f["frames/frame_0001.fits"]
        assert sorted(group) == sorted(
            ["frame_shape", "data", "noisemap", "cosmicsmask", "wcs", "image_pixel_coordinates"]
        )
        assert group["frame_shape"][()].tolist() == [512, 400]
        for kind in ("data", "noisemap", "cosmicsmask", "wcs", "image_pixel_coordinates"):
            assert sorted(group[kind]) == sorted(frame_stamps)
        for name, stamp in frame_stamps.items():
            assert group[f"data/{name}"].dtype == np.float32
            np.testing.assert_array_equal(group[f"data/{name}"][()], stamp.data)
            np.testing.assert_array_equal(group[f"noisemap/{name}"][()], stamp.noise)
            assert group[f"cosmicsmask/{name}"].dtype == bool
            np.testing.assert_array_equal(group[f"cosmicsmask/{name}"][()], stamp.mask)
            header = group[f"wcs/{name}"][()]
            assert isinstance(header, bytes)  # as lightcurver's notebooks read it
            assert fits.Header.fromstring(header.decode()).tostring() == stamp.wcs_header
            centre = group[f"image_pixel_coordinates/{name}"][()]
            assert centre.dtype == np.float64
            np.testing.assert_array_equal(centre, np.add(stamp.origin, (stamp.size - 1) / 2))
        assert sorted(f["frames/frame_0002.fits/data"]) == ["ROI"]
    # a re-export replaces the file: a frame left out is gone
    cutouts.export_regions_h5({"frames/frame_0002.fits": second}, out)
    with h5py.File(out) as f:
        assert sorted(f["frames"]) == ["frame_0002.fits"]


def test_export_regions_h5_rejects_bad_keys(tmp_path, frame_stamps):
    path = tmp_path / "frame.h5"
    cutouts.write_frame_cutouts(path, frame_stamps, {}, frame_shape=(5, 5))
    with pytest.raises(ValueError, match="image_relpath"):
        cutouts.export_regions_h5({"frame_0001.fits": path}, tmp_path / "regions.h5")
    with pytest.raises(FileNotFoundError):
        cutouts.export_regions_h5({"frames/a.fits": tmp_path / "missing.h5"}, tmp_path / "regions.h5")
    assert sorted(os.listdir(tmp_path)) == ["frame.h5"]
