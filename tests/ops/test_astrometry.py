"""Tests of lightcurver_ops.astrometry against the simulator's true WCS and synthetic geometry."""

import csv
import math
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import proj_plane_pixel_scales

from lightcurver_ops import astrometry
from lightcurver_ops.astrometry import (
    adapt_wcs_from_reference,
    bad_pointings,
    combine_footprints,
    frame_geometry,
    sky_from_tangent_plane,
    solve_field_available,
    solve_with_astrometry_net,
    solve_with_catalog,
    tangent_plane_offsets,
)
from lightcurver_ops.errors import AstrometryError
from lightcurver_ops.footprint_plots import plot_footprints
from lightcurver_ops.frames import calibrate_frame, read_raw_frame
from lightcurver_ops.simulate import FrameTruth, SimulationSpec, SimulationTruth, simulate_dataset

N = 512
# Small frames with a denser star field than the default, so that a 512x512 frame holds ~40 stars.
SPEC = SimulationSpec(nx=N, ny=N, n_frames=3, seed=7, star_density=12.0, max_rotation_deg=2.5)
TOLERANCE_PIXELS = 0.1
CHECK_PIXELS = np.array(
    [[-0.5, -0.5], [-0.5, N - 0.5], [N - 0.5, N - 0.5], [N - 0.5, -0.5], [(N - 1) / 2, (N - 1) / 2]]
)  # outer corners and centre, 0-based


# --------------------------------------------------------------------------------------------------
# Helpers


def true_wcs(frame: FrameTruth) -> WCS:
    return WCS(fits.Header(frame.wcs_header))


def pixel_errors(wcs: WCS, truth: WCS, pixels: np.ndarray = CHECK_PIXELS) -> np.ndarray:
    """Distance (pixels) between ``pixels`` and the position ``wcs`` gives to their true sky position."""
    ra, dec = truth.all_pix2world(pixels[:, 0], pixels[:, 1], 0)
    x, y = wcs.all_world2pix(ra, dec, 0)
    return np.hypot(x - pixels[:, 0], y - pixels[:, 1])


def detect(out: Path, frame: FrameTruth, spec: SimulationSpec) -> tuple[np.ndarray, np.ndarray, WCS | None]:
    """Source positions (brightest first, 0-based) and fluxes of a raw frame, and its header WCS.

    The pipeline's sources come from calibrate_frame; their isophotal barycentres scatter by 0.1-0.3
    pixel for faint stars, so they are refined here with sep's windowed positions, as a plate solving
    stage should.
    """
    raw = read_raw_frame(out / "raw" / frame.file_name)
    calibrated = calibrate_frame(
        raw, spec.gain, spec.exptime, n_boxes=4, mask_sources=True, threshold=3.0, min_area=10
    )
    sources = calibrated.sources
    image = np.ascontiguousarray(np.nan_to_num(calibrated.image.astype(np.float64)))
    x, y, _ = sep.winpos(
        image,
        np.asarray(sources["x"], dtype=float),
        np.asarray(sources["y"], dtype=float),
        2.0 / 2.3548 * calibrated.seeing_pixels,
    )
    return np.column_stack([x, y]), np.asarray(sources["flux"], dtype=float), raw.wcs


def catalogue_at(out: Path, mjd: float) -> np.ndarray:
    """(M, 2) catalogue (RA, Dec) deg moved by proper motion to ``mjd``, brightest G first."""
    with open(out / "catalog" / "gaia_catalog.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: float(row["phot_g_mean_mag"]))
    years = (mjd - Time(2016.0, format="jyear").mjd) / 365.25
    assert {float(row["ref_epoch"]) for row in rows} == {2016.0}
    ra = np.array([float(row["ra"]) for row in rows])
    dec = np.array([float(row["dec"]) for row in rows])
    pmra = np.array([float(row["pmra"]) for row in rows])
    pmdec = np.array([float(row["pmdec"]) for row in rows])
    return np.column_stack([ra + pmra * years / 3.6e6 / np.cos(np.radians(dec)), dec + pmdec * years / 3.6e6])


def make_wcs(crval: tuple[float, float], crpix: tuple[float, float], cd: np.ndarray) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = crval
    wcs.wcs.crpix = crpix
    wcs.wcs.cd = cd
    return wcs


def rotation_cd(scale_arcsec: float, rotation_deg: float, parity: int = -1) -> np.ndarray:
    """CD (deg/pixel); parity -1: east left when north up (the usual sky view), +1: mirrored."""
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    scale = scale_arcsec / 3600.0
    return scale * np.array([[parity * c, s], [-parity * s, c]])


def square_footprint(ra: float, dec: float, size_deg: float, rotation_deg: float = 0.0) -> np.ndarray:
    """Footprint (4, 2) of a square TAN frame of ``size_deg`` centred on (ra, dec)."""
    n = 1000
    wcs = make_wcs((ra, dec), ((n + 1) / 2, (n + 1) / 2), rotation_cd(size_deg * 3600 / n, rotation_deg))
    return frame_geometry(wcs, (n, n), ra, dec).footprint


# --------------------------------------------------------------------------------------------------
# Simulated data


@pytest.fixture(scope="module")
def with_wcs(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("with_wcs")
    truth = simulate_dataset(out, SPEC)
    return truth, [detect(out, frame, SPEC) for frame in truth.frames]


@pytest.fixture(scope="module")
def without_wcs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationTruth, list]:
    spec = SimulationSpec(
        nx=N, ny=N, n_frames=2, seed=11, star_density=12.0, max_rotation_deg=2.5, with_wcs=False
    )
    out = tmp_path_factory.mktemp("without_wcs")
    truth = simulate_dataset(out, spec)
    return out, truth, [detect(out, frame, spec) for frame in truth.frames]


# --------------------------------------------------------------------------------------------------
# adapt_wcs_from_reference


def test_adapt_matches_the_true_wcs_of_simulated_frames(with_wcs):
    truth, detections = with_wcs
    reference_xy, reference_flux, reference_wcs = detections[0]
    assert reference_wcs is not None  # the header WCS of frame 1, read by read_raw_frame
    for frame, (xy, flux, _) in zip(truth.frames[1:], detections[1:], strict=True):
        solution = adapt_wcs_from_reference(reference_wcs, reference_xy, xy, reference_flux, flux)
        errors = pixel_errors(solution.wcs, true_wcs(frame))
        assert errors.max() < TOLERANCE_PIXELS, errors
        assert solution.strategy == "adapt_wcs_from_reference"
        assert solution.n_matches >= 15
        assert 0 < solution.rms_pixels < 0.5
        assert solution.wcs.wcs.ctype[0] == "RA---TAN"


def _synthetic_pairs(reference: WCS, affine: np.ndarray, n: int = 60, seed: int = 0):
    """Random sky stars seen by the reference WCS and by a frame with pixels ``q = A p + t``."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(-300, 2300, (n, 2))
    ra, dec = reference.all_pix2world(pixels[:, 0], pixels[:, 1], 0)
    reference_xy = np.column_stack(reference.all_world2pix(ra, dec, 0))
    target_xy = reference_xy @ affine[:, :2].T + affine[:, 2]
    inside = (target_xy > 0).all(axis=1) & (target_xy < 2047).all(axis=1)
    return reference_xy, target_xy[inside], (ra, dec)


def _affine(
    rotation_deg: float, scale: float, shift: tuple[float, float], mirror: bool = False
) -> np.ndarray:
    """``[A | t]`` rotating, scaling (and mirroring) a 2048 frame about its centre, then shifting it."""
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    matrix = scale * np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if mirror else 1.0, 1.0])
    centre = np.array([1023.5, 1023.5])
    return np.column_stack([matrix, centre + np.asarray(shift) - matrix @ centre])


def _target_truth(reference: WCS, affine: np.ndarray) -> np.ndarray:
    """Sky position of CHECK-like pixels of a 2048 target frame via the reference WCS."""
    pixels = np.array([[-0.5, -0.5], [-0.5, 2047.5], [2047.5, 2047.5], [2047.5, -0.5], [1023.5, 1023.5]])
    back = np.linalg.solve(affine[:, :2], (pixels - affine[:, 2]).T).T
    return pixels, np.column_stack(reference.all_pix2world(back[:, 0], back[:, 1], 0))


@pytest.mark.parametrize("mirror", [False, True])
def test_adapt_is_exact_for_large_rotations_where_the_old_formula_fails(mirror):
    # A mirrored reference (east to the right) and a target rotated by 30 deg and scaled by 1 %:
    # lightcurver's CD_new = A·CD_ref rotates the wrong way; CD_ref·A⁻¹ is exact.
    reference = make_wcs((150.0, 2.0), (1024.5, 1024.5), rotation_cd(0.3, 10.0, parity=+1))
    affine = _affine(30.0, 1.01, (350.0, -420.0), mirror=mirror)
    reference_xy, target_xy, _ = _synthetic_pairs(reference, affine)
    solution = adapt_wcs_from_reference(reference, reference_xy, target_xy)

    pixels, sky = _target_truth(reference, affine)
    new_xy = np.column_stack(solution.wcs.all_world2pix(sky[:, 0], sky[:, 1], 0))
    assert np.abs(new_xy - pixels).max() < 1e-3
    assert solution.rms_pixels < 1e-6

    crpix0 = affine[:, :2] @ (reference.wcs.crpix - 1) + affine[:, 2]
    old = make_wcs(tuple(reference.wcs.crval), tuple(crpix0 + 1), affine[:, :2] @ reference.wcs.cd)
    old_xy = np.column_stack(old.all_world2pix(sky[:, 0], sky[:, 1], 0))
    assert np.hypot(*(old_xy - pixels).T).max() > 1.0


def test_adapt_handles_pc_cdelt_and_sip_references():
    reference = WCS(naxis=2)
    reference.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    reference.wcs.crval = [359.9, -30.0]
    reference.wcs.crpix = [1000.0, 1100.0]
    reference.wcs.cdelt = [-0.25 / 3600, 0.25 / 3600]
    angle = math.radians(4.0)
    reference.wcs.pc = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    a, b = np.zeros((4, 4)), np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 2], a[3, 0] = 2e-6, -1e-6, 3e-6, 4e-10
    b[2, 0], b[1, 1], b[0, 2], b[0, 3] = -1e-6, 2e-6, 1e-6, -3e-10
    reference.sip = Sip(a, b, None, None, reference.wcs.crpix)
    reference.wcs.set()
    affine = _affine(-12.0, 0.995, (-150.0, 80.0))
    reference_xy, target_xy, _ = _synthetic_pairs(reference, affine, seed=1)

    solution = adapt_wcs_from_reference(reference, reference_xy, target_xy)
    pixels, sky = _target_truth(reference, affine)
    new_xy = np.column_stack(solution.wcs.all_world2pix(sky[:, 0], sky[:, 1], 0))
    assert np.abs(new_xy - pixels).max() < 1e-3
    assert solution.wcs.sip is not None
    assert list(solution.wcs.wcs.ctype) == ["RA---TAN-SIP", "DEC--TAN-SIP"]


def test_adapt_rejects_outliers_and_reports_the_fit():
    reference = make_wcs((10.0, 40.0), (1024.5, 1024.5), rotation_cd(0.4, 0.0))
    affine = _affine(0.5, 1.0, (12.0, -7.0))
    reference_xy, target_xy, _ = _synthetic_pairs(reference, affine, n=80, seed=2)
    rng = np.random.default_rng(3)
    noisy = target_xy + rng.normal(0, 0.03, target_xy.shape)
    noisy[::10] += 1.2  # blends: a few positions off by 1.7 pixels
    solution = adapt_wcs_from_reference(reference, reference_xy, noisy)
    pixels, sky = _target_truth(reference, affine)
    new_xy = np.column_stack(solution.wcs.all_world2pix(sky[:, 0], sky[:, 1], 0))
    assert np.abs(new_xy - pixels).max() < 0.05
    assert solution.n_matches <= len(noisy) - len(noisy[::10])
    assert solution.rms_pixels == pytest.approx(0.03 * math.sqrt(2), rel=0.3)


def test_adapt_errors():
    reference = make_wcs((10.0, 40.0), (1024.5, 1024.5), rotation_cd(0.4, 0.0))
    rng = np.random.default_rng(4)
    many = rng.uniform(0, 2048, (40, 2))
    with pytest.raises(AstrometryError, match="too few sources: 3 in the target list"):
        adapt_wcs_from_reference(reference, many, many[:3])
    with pytest.raises(AstrometryError, match="no consistent match"):
        adapt_wcs_from_reference(reference, many, rng.uniform(0, 2048, (40, 2)))
    with pytest.raises(ValueError, match="reference_xy must have shape"):
        adapt_wcs_from_reference(reference, many[:, 0], many)
    with pytest.raises(ValueError, match="target_flux must be finite"):
        adapt_wcs_from_reference(reference, many, many, target_flux=np.ones(3))
    not_tan = make_wcs((10.0, 40.0), (1024.5, 1024.5), rotation_cd(0.4, 0.0))
    not_tan.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    with pytest.raises(ValueError, match="TAN projection"):
        adapt_wcs_from_reference(not_tan, many, many)
    with pytest.raises(ValueError, match="celestial"):
        adapt_wcs_from_reference(WCS(naxis=2), many, many)


# --------------------------------------------------------------------------------------------------
# solve_with_catalog


def test_catalogue_solve_matches_the_true_wcs(without_wcs):
    out, truth, detections = without_wcs
    for frame, (xy, flux, header_wcs) in zip(truth.frames, detections, strict=True):
        assert header_wcs is None  # the raw frames carry no WCS
        catalogue = catalogue_at(out, frame.mjd)
        scale_guess = truth.spec.pixel_scale * 1.02  # 2 % off
        solution = solve_with_catalog(
            xy,
            catalogue,
            truth.roi_ra,
            truth.roi_dec,
            scale_guess,
            (N, N),
            rotation_guess_deg=0.0,
            source_flux=flux,
        )
        errors = pixel_errors(solution.wcs, true_wcs(frame))
        assert errors.max() < TOLERANCE_PIXELS, errors
        assert solution.strategy == "catalog"
        assert solution.n_matches >= 15
        assert solution.wcs.pixel_shape == (N, N)

        geometry = frame_geometry(solution.wcs, (N, N), truth.roi_ra, truth.roi_dec)
        assert geometry.pixel_scale == pytest.approx(truth.spec.pixel_scale, rel=5e-4)
        assert geometry.angle_to_north == pytest.approx(-frame.rotation_deg, abs=0.02)
        assert geometry.roi_in_footprint
        assert np.hypot(*(np.array(geometry.roi_pixel) - frame.roi_pixel)) < TOLERANCE_PIXELS


@pytest.mark.parametrize(
    ("rotation", "scale_error", "parity"), [(25.0, 0.03, -1), (-4.0, -0.04, -1), (3.0, 0.0, 1)]
)
def test_catalogue_solve_with_rotation_scale_error_and_either_parity(rotation, scale_error, parity):
    rng = np.random.default_rng(5)
    truth = make_wcs((250.0, -60.0), (1024.5, 1024.5), rotation_cd(0.25, rotation, parity))
    pixels = rng.uniform(-100, 2150, (150, 2))
    ra, dec = truth.all_pix2world(pixels[:, 0], pixels[:, 1], 0)
    catalogue = np.column_stack([ra, dec])
    inside = ((pixels >= 0) & (pixels <= 2047)).all(axis=1)
    detected = pixels[inside] + rng.normal(0, 0.02, (inside.sum(), 2))
    ra0, dec0 = truth.all_pix2world(1500.0, 700.0, 0)  # the ROI is off the frame centre
    solution = solve_with_catalog(
        detected,
        catalogue,
        float(ra0),
        float(dec0),
        0.25 * (1 + scale_error),
        (2048, 2048),
        rotation_guess_deg=0.0,
    )
    corners = np.array([[-0.5, -0.5], [-0.5, 2047.5], [2047.5, 2047.5], [2047.5, -0.5]])
    assert pixel_errors(solution.wcs, truth, corners).max() < 0.02
    assert solution.n_matches >= 100
    assert solution.rms_pixels == pytest.approx(0.02 * math.sqrt(2), rel=0.2)


def test_catalogue_solve_errors():
    rng = np.random.default_rng(6)
    wcs = make_wcs((20.0, 10.0), (256.5, 256.5), rotation_cd(0.3, 0.0))
    pixels = rng.uniform(0, 511, (40, 2))
    catalogue = np.column_stack(wcs.all_pix2world(pixels[:, 0], pixels[:, 1], 0))
    with pytest.raises(AstrometryError, match="too few sources: 4 in the source list"):
        solve_with_catalog(pixels[:4], catalogue, 20.0, 10.0, 0.3, (512, 512))
    with pytest.raises(AstrometryError, match="too few sources: 0 in the catalogue near the frame"):
        solve_with_catalog(pixels, catalogue + np.array([30.0, 0.0]), 20.0, 10.0, 0.3, (512, 512))
    with pytest.raises(ValueError, match="pixel_scale_arcsec must be a finite positive number"):
        solve_with_catalog(pixels, catalogue, 20.0, 10.0, -0.3, (512, 512))
    with pytest.raises(ValueError, match="image_shape"):
        solve_with_catalog(pixels, catalogue, 20.0, 10.0, 0.3, (512,))
    with pytest.raises(ValueError, match="pointing Dec"):
        solve_with_catalog(pixels, catalogue, 20.0, 100.0, 0.3, (512, 512))


# --------------------------------------------------------------------------------------------------
# astrometry.net


def test_solve_field_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not solve_field_available()
    xy = np.random.default_rng(7).uniform(0, 511, (20, 2))
    with pytest.raises(AstrometryError, match="solve-field is not installed"):
        solve_with_astrometry_net(xy, np.ones(20), (512, 600), 20.0, 10.0, (0.2, 0.3))


def test_solve_field_command():
    command = astrometry._solve_field_command(
        "/opt/an/solve-field", Path("/w/xylist.fits"), Path("/w"), (512, 600), 42.25, -19.5, (0.2, 0.3), 60
    )
    assert command[:2] == ["/opt/an/solve-field", "/w/xylist.fits"]
    options = dict(zip(command[2::2], command[3::2], strict=False))
    assert (options["--x-column"], options["--y-column"], options["--sort-column"]) == ("X", "Y", "FLUX")
    assert options["--width"] == "600" and options["--height"] == "512"
    assert float(options["--ra"]) == 42.25 and float(options["--dec"]) == -19.5 and options["--radius"] == "1"
    assert float(options["--scale-low"]) == 0.2 and float(options["--scale-high"]) == 0.3
    assert options["--scale-units"] == "arcsecperpix"
    assert options["--dir"] == "/w" and options["--cpulimit"] == "60"
    assert {"--no-plots", "--overwrite"} <= set(command)


FAKE_SOLVE_FIELD = """\
#!{python}
# Stand-in for astrometry.net's solve-field: writes a known WCS, .solved and .corr next to the xylist.
import sys
from pathlib import Path
from astropy.io import fits
from astropy.table import Table
args = sys.argv[1:]
xylist = Path(args[0])
out = Path(args[args.index("--dir") + 1])
table = Table.read(xylist)
header = fits.Header({header!r})
fits.PrimaryHDU(header=header).writeto(out / (xylist.stem + ".wcs"), overwrite=True)
(out / (xylist.stem + ".solved")).write_bytes(b"\\x01")
corr = Table({{"field_x": table["X"], "field_y": table["Y"], "index_x": table["X"] + 0.3,
               "index_y": table["Y"] - 0.4}})
corr.write(out / (xylist.stem + ".corr"), format="fits", overwrite=True)
"""


def test_solve_with_astrometry_net_reads_the_solution(monkeypatch, tmp_path):
    truth = make_wcs((42.0, 19.0), (300.5, 256.5), rotation_cd(0.214, 1.0))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "solve-field"
    script.write_text(FAKE_SOLVE_FIELD.format(python=sys.executable, header=dict(truth.to_header())))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert solve_field_available()

    rng = np.random.default_rng(8)
    xy, flux = rng.uniform(0, 511, (12, 2)), rng.uniform(10, 1000, 12)
    solution = solve_with_astrometry_net(
        xy, flux, (512, 600), 42.0, 19.0, (0.2, 0.23), workdir=tmp_path / "an"
    )
    assert solution.strategy == "astrometry_net"
    assert pixel_errors(solution.wcs, truth, CHECK_PIXELS).max() < 1e-9
    assert solution.n_matches == 12
    assert solution.rms_pixels == pytest.approx(0.5)
    assert solution.wcs.pixel_shape == (600, 512)
    written = Table.read(tmp_path / "an" / "xylist.fits")
    order = np.argsort(-flux)
    np.testing.assert_allclose(written["X"], xy[order, 0] + 1.0, rtol=1e-6)  # FITS pixels are 1-based
    np.testing.assert_allclose(written["Y"], xy[order, 1] + 1.0, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# frame_geometry


def test_frame_geometry_of_the_true_wcs(with_wcs):
    truth, _ = with_wcs
    for frame in truth.frames:
        wcs = true_wcs(frame)
        geometry = frame_geometry(wcs, (N, N), truth.roi_ra, truth.roi_dec)
        assert geometry.pixel_scale == pytest.approx(truth.spec.pixel_scale, rel=1e-9)
        assert geometry.anisotropy == pytest.approx(0.0, abs=1e-9)
        assert geometry.angle_to_north == pytest.approx(-frame.rotation_deg, abs=1e-9)
        assert geometry.roi_in_footprint
        np.testing.assert_allclose(geometry.roi_pixel, frame.roi_pixel, atol=1e-6)
        wcs.pixel_shape = (N, N)
        np.testing.assert_allclose(geometry.footprint, wcs.calc_footprint(center=False), atol=1e-10)


def test_angle_to_north_uses_cdelt_with_pc():
    # CDELT1 < 0 with a PC rotation: the same sky geometry as the CD form. lightcurver's
    # atan2(-PC1_2, PC2_2) ignores CDELT and gets the sign of the angle wrong.
    rotation = 7.0
    cd = rotation_cd(0.3, rotation)
    with_cd = make_wcs((30.0, 5.0), (100.5, 100.5), cd)
    with_pc = WCS(naxis=2)
    with_pc.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    with_pc.wcs.crval, with_pc.wcs.crpix = [30.0, 5.0], [100.5, 100.5]
    with_pc.wcs.cdelt = [-0.3 / 3600, 0.3 / 3600]
    with_pc.wcs.pc = cd / with_pc.wcs.cdelt[:, None]
    with_pc.wcs.set()
    for wcs in (with_cd, with_pc):
        assert frame_geometry(wcs, (200, 200), 30.0, 5.0).angle_to_north == pytest.approx(-rotation)
    pc = with_pc.wcs.pc
    assert math.degrees(math.atan2(-pc[0, 1], pc[1, 1])) == pytest.approx(rotation)  # the old, wrong sign


def test_roi_outside_the_frame():
    wcs = make_wcs((30.0, 5.0), (100.5, 100.5), rotation_cd(0.3, 0.0))
    elsewhere = frame_geometry(wcs, (200, 200), 30.5, 5.0)
    assert not elsewhere.roi_in_footprint
    assert np.isfinite(elsewhere.roi_pixel).all()
    antipode = frame_geometry(wcs, (200, 200), 210.0, -5.0)
    assert not antipode.roi_in_footprint
    assert np.isnan(antipode.roi_pixel).all()
    edge = frame_geometry(wcs, (200, 200), *map(float, wcs.all_pix2world(199.4, -0.4, 0)))
    assert edge.roi_in_footprint


def test_anisotropy():
    wcs = make_wcs((30.0, 5.0), (100.5, 100.5), np.diag([-0.3, 0.33]) / 3600)
    geometry = frame_geometry(wcs, (200, 200), 30.0, 5.0)
    assert geometry.anisotropy == pytest.approx(0.03 / 0.63)
    assert geometry.pixel_scale == pytest.approx(0.315)
    np.testing.assert_allclose(sorted(proj_plane_pixel_scales(wcs) * 3600), [0.3, 0.33])


# --------------------------------------------------------------------------------------------------
# Tangent plane, footprints, bad pointings


def test_tangent_plane_matches_astropy_tan():
    wcs = make_wcs((359.99, 40.0), (1.0, 1.0), np.eye(2))  # intermediate coordinates in deg
    ra, dec = np.array([359.5, 0.3, 359.99]), np.array([40.2, 39.6, 41.0])
    xi, eta = tangent_plane_offsets(ra, dec, 359.99, 40.0)
    x, y = wcs.wcs_world2pix(ra, dec, 0)
    np.testing.assert_allclose(xi, x, atol=1e-10)
    np.testing.assert_allclose(eta, y, atol=1e-10)
    back_ra, back_dec = sky_from_tangent_plane(xi, eta, 359.99, 40.0)
    np.testing.assert_allclose(back_dec, dec, atol=1e-10)
    np.testing.assert_allclose((back_ra - ra + 180) % 360 - 180, 0, atol=1e-10)


def _footprints(ra0: float, dec0: float = 10.0) -> list[np.ndarray]:
    # Three 0.2 deg frames stepping 0.05 deg in RA (by 0.05/cos(dec) deg of RA): across RA = 0 for ra0 = 0.
    step = 0.05 / math.cos(math.radians(dec0))
    return [square_footprint((ra0 + k * step) % 360.0, dec0, 0.2) for k in (-1, 0, 1)]


def test_combine_footprints_across_ra_zero():
    wrapped = combine_footprints(_footprints(0.0))
    shifted = combine_footprints(_footprints(180.0))
    assert wrapped.union.area == pytest.approx(shifted.union.area, rel=1e-9)
    assert wrapped.intersection.area == pytest.approx(shifted.intersection.area, rel=1e-9)
    # Three 0.2 x 0.2 deg squares at 0.05 deg steps: union 0.3 x 0.2, intersection 0.1 x 0.2 (on the sky;
    # in RA/Dec degrees the RA extent is larger by 1/cos(dec)).
    cos_dec = math.cos(math.radians(10.0))
    assert wrapped.union.area * cos_dec == pytest.approx(0.3 * 0.2, rel=0.01)
    assert wrapped.intersection.area * cos_dec == pytest.approx(0.1 * 0.2, rel=0.01)
    ra = np.asarray(wrapped.union.exterior.coords)[:, 0]
    assert ra.max() - ra.min() == pytest.approx(0.3 / cos_dec, rel=0.01)  # continuous across RA = 0
    assert wrapped.centre[1] == pytest.approx(10.0, abs=1e-4)
    assert min(wrapped.centre[0], 360 - wrapped.centre[0]) < 1e-4
    assert abs(ra.mean() - wrapped.centre[0]) < 0.01
    assert wrapped.union_geojson["type"] == "Polygon"
    assert wrapped.intersection_geojson["type"] == "Polygon"


def test_combine_disjoint_footprints_has_no_intersection():
    combined = combine_footprints([square_footprint(359.8, 0.0, 0.1), square_footprint(0.2, 0.0, 0.1)])
    assert combined.intersection is None
    assert combined.intersection_geojson is None
    assert combined.union.geom_type == "MultiPolygon"
    assert combined.union.area == pytest.approx(0.02, rel=1e-3)


def test_combine_footprints_errors():
    with pytest.raises(ValueError, match="non-empty"):
        combine_footprints([])
    with pytest.raises(ValueError, match=r"footprints\[0\] must have shape"):
        combine_footprints([np.zeros((2, 2))])
    bowtie = np.array([[0.0, 0.0], [0.1, 0.1], [0.1, 0.0], [0.0, 0.1]])
    with pytest.raises(ValueError, match="not a simple polygon"):
        combine_footprints([bowtie])


def test_bad_pointings_across_ra_zero():
    rng = np.random.default_rng(9)
    jitter = rng.normal(0, 4 / 3600, (12, 2))
    footprints = [square_footprint((0.0 + dx) % 360, 30.0 + dy, 0.2) for dx, dy in jitter]
    footprints.append(square_footprint(0.08, 30.0, 0.2))  # ~250 arcsec off
    flags = bad_pointings(footprints)
    assert flags.tolist() == [False] * 12 + [True]
    assert not bad_pointings(footprints[:12]).any()
    with pytest.raises(ValueError, match="n_sigma"):
        bad_pointings(footprints, n_sigma=0.0)


def test_plot_footprints(tmp_path):
    footprints = [*_footprints(0.0), square_footprint(0.3, 10.0, 0.2)]
    combined = combine_footprints(footprints)
    path = plot_footprints(
        footprints,
        combined.union,
        combined.intersection,
        tmp_path / "plots" / "fp.png",
        roi=(0.0, 10.0),
        bad=np.array([False, False, False, True]),
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="bad must have shape"):
        plot_footprints(footprints, combined.union, None, tmp_path / "x.png", bad=np.array([True]))
