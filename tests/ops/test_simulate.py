"""Tests of the simulated data set against its own ground truth."""

import csv
import importlib.util
import math
import warnings
from pathlib import Path

import astropy.units as u
import ephem
import numpy as np
import pytest
import yaml
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from erfa import ErfaWarning

from lightcurver_ops.catalog import CATALOG_COLUMNS
from lightcurver_ops.simulate import (
    FrameTruth,
    SimulationSpec,
    SimulationTruth,
    SourceTruth,
    load_truth,
    psf_stamp,
    simulate_dataset,
)

SPEC = SimulationSpec(nx=256, ny=256, n_frames=3, seed=3)

# The 68 top-level keys of lightcurver's template config (spec §8), in order.
TEMPLATE_KEYS = [
    "workdir",
    "raw_dirs",
    "files_match_pattern",
    "hdu_data_index",
    "hdu_header_indexes",
    "trim_vertical",
    "trim_horizontal",
    "multiprocessing_cpu_count",
    "ROI",
    "ROI_size",
    "telescope",
    "do_background_subtraction",
    "mask_sources_before_background",
    "background_estimation_n_boxes",
    "source_extraction_threshold",
    "source_extraction_min_area",
    "source_extraction_do_plots",
    "plate_solve_frames",
    "already_plate_solved",
    "plate_solving_strategy",
    "reference_frame_for_wcs",
    "plate_scale_interval",
    "alternate_plate_solve_gaia_radius",
    "astrometry_net_api_key",
    "max_pixel_anisotropy",
    "plate_solving_min_success_fraction",
    "star_selection_strategy",
    "ROI_disk_radius_arcseconds",
    "star_min_gmag",
    "star_max_gmag",
    "star_max_astrometric_excess_noise",
    "min_phot_g_mean_flux_over_error",
    "min_number_stars",
    "gaia_query_redo",
    "gaia_provider",
    "stars_to_use_psf",
    "stars_to_use_norm",
    "stars_to_exclude_psf",
    "stars_to_exclude_norm",
    "stamp_size_stars",
    "stamp_size_ROI",
    "redo_stamp_extraction",
    "mask_bad_rows_and_columns",
    "clean_cosmics",
    "cosmics_masking_params",
    "redo_psf",
    "subsampling_factor",
    "field_distortion",
    "psf_n_iter_analytic",
    "psf_n_iter_pixels",
    "psf_fit_exclude_strategy",
    "redo_star_photometry",
    "star_deconv_n_iter",
    "star_photometry_uniform_background_per_epoch",
    "star_photometry_starlet_global_background",
    "fluxes_fit_exclude_strategy",
    "constraints_on_frame_columns_for_roi",
    "constraints_on_normalization_coeff",
    "prepared_roi_cutouts_path",
    "photometric_band",
    "do_ROI_model",
    "point_sources",
    "fix_point_source_astrometry",
    "starting_background",
    "further_optimize_background",
    "roi_model_regularization",
    "roi_deconv_translations_iters",
    "roi_deconv_all_iters",
]
GAIA_COLUMNS = [*CATALOG_COLUMNS, "ruwe"]  # what the pipeline reads, plus RUWE


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationTruth]:
    out = tmp_path_factory.mktemp("sim")
    return out, simulate_dataset(out, SPEC)


def _data(out: Path, frame: FrameTruth) -> np.ndarray:
    return fits.getdata(out / "raw" / frame.file_name).astype(float)


def _source(truth: SimulationTruth, source_id: int) -> SourceTruth:
    return next(s for s in truth.sources if s.source_id == source_id)


def _catalog(out: Path) -> list[dict[str, str]]:
    with open(out / "catalog" / "gaia_catalog.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_same_seed_gives_identical_files(sim, tmp_path):
    out, truth = sim
    again = simulate_dataset(tmp_path / "again", SPEC)
    assert again == truth
    assert load_truth(out) == truth
    for rel in [
        "truth.json",
        "catalog/gaia_catalog.csv",
        "header_parser/parse_header.py",
        *(f"raw/{f.file_name}" for f in truth.frames),
    ]:
        assert (out / rel).read_bytes() == (tmp_path / "again" / rel).read_bytes(), rel
    other = simulate_dataset(tmp_path / "other", SimulationSpec(nx=256, ny=256, n_frames=1, seed=4))
    assert not np.array_equal(_data(out, truth.frames[0]), _data(tmp_path / "other", other.frames[0]))


def test_headers_parse_with_the_written_parser(sim):
    out, truth = sim
    parser_path = out / "header_parser" / "parse_header.py"
    module_spec = importlib.util.spec_from_file_location("parse_header", parser_path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    assert sorted(p.name for p in (out / "raw").iterdir()) == [f.file_name for f in truth.frames]
    for frame in truth.frames:
        header = fits.getheader(out / "raw" / frame.file_name)
        assert module.parse_header(header) == {"mjd": frame.mjd, "gain": 2.0, "exptime": 300.0, "filter": "r"}
        assert Time(header["DATE-OBS"], scale="utc").mjd == pytest.approx(frame.mjd, abs=1e-7)
        assert header["SATURATE"] == SPEC.saturation_adu and header["RDNOISE"] == SPEC.read_noise
        wcs, true_wcs = WCS(header), WCS(fits.Header(frame.wcs_header))
        assert wcs.wcs.has_cd()
        np.testing.assert_allclose(wcs.wcs.cd, true_wcs.wcs.cd, rtol=1e-12)
        np.testing.assert_allclose(wcs.wcs.crval, true_wcs.wcs.crval, rtol=1e-14)
        roi = wcs.world_to_pixel_values(SPEC.ra0, SPEC.dec0)
        np.testing.assert_allclose(roi, frame.roi_pixel, atol=1e-6)
        assert 20 < roi[0] < SPEC.nx - 20 and 20 < roi[1] < SPEC.ny - 20
        scale = np.sqrt(abs(np.linalg.det(wcs.wcs.cd))) * 3600
        assert scale == pytest.approx(SPEC.pixel_scale, rel=1e-9)


def test_no_wcs_when_not_requested(tmp_path):
    spec = SimulationSpec(nx=256, ny=256, n_frames=1, with_wcs=False)
    truth = simulate_dataset(tmp_path, spec)
    header = fits.getheader(tmp_path / "raw" / truth.frames[0].file_name)
    assert "CTYPE1" not in header and "CD1_1" not in header
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["already_plate_solved"] == 0


def test_data_are_adu_around_the_true_sky(sim):
    out, truth = sim
    for frame in truth.frames:
        data = _data(out, frame)
        assert fits.getdata(out / "raw" / frame.file_name).dtype == np.dtype(">f4")
        sky = np.median(data) * SPEC.gain / SPEC.exptime
        assert sky == pytest.approx(frame.sky_level_e_per_s, rel=0.02)
        # the gradient: mean of the right half minus the left half, stars clipped out by medians
        gx, gy = frame.sky_gradient_e_per_s_per_pixel
        half = SPEC.nx // 2
        left = np.median(data[:, :half]) * SPEC.gain / SPEC.exptime
        right = np.median(data[:, half:]) * SPEC.gain / SPEC.exptime
        assert right - left == pytest.approx(gx * half, abs=0.15)
        assert 0.01 < math.hypot(gx, gy) * SPEC.nx / frame.sky_level_e_per_s < 0.06


def test_psf_truth_is_consistent(sim):
    _, truth = sim
    for frame in truth.frames:
        stamp = psf_stamp(frame)
        assert stamp.sum() == pytest.approx(frame.psf_captured_fraction, rel=1e-12)
        assert frame.psf_captured_fraction > 0.995
        # independent evaluation of the continuous PSF from the recorded parameters
        a = frame.moffat_alpha_pixels
        b = a * (1 - frame.ellipticity)
        theta = math.radians(frame.position_angle_deg)
        s = frame.wing_sigma_pixels
        grid = np.linspace(-4 * frame.moffat_fwhm_pixels, 4 * frame.moffat_fwhm_pixels, 1201)
        xx, yy = np.meshgrid(grid, grid)
        xr = xx * math.cos(theta) + yy * math.sin(theta)
        yr = -xx * math.sin(theta) + yy * math.cos(theta)
        moffat = (
            (frame.moffat_beta - 1)
            / (math.pi * a * b)
            * (1 + (xr / a) ** 2 + (yr / b) ** 2) ** (-frame.moffat_beta)
        )
        wing = np.exp(-(xx**2 + yy**2) / (2 * s**2)) / (2 * math.pi * s**2)
        psf = (1 - frame.wing_fraction) * moffat + frame.wing_fraction * wing
        step = grid[1] - grid[0]
        fwhm = 2 * math.sqrt(np.count_nonzero(psf > psf.max() / 2) * step**2 / math.pi)
        assert frame.seeing_fwhm_pixels == pytest.approx(fwhm, rel=0.01)
        assert frame.seeing_fwhm_arcsec == pytest.approx(frame.seeing_fwhm_pixels * SPEC.pixel_scale)
        assert 0.7 <= frame.moffat_fwhm_pixels * SPEC.pixel_scale <= 1.3
        # the pixel-integrated stamp of a centred source agrees with the density at the centre
        centre = psf_stamp(frame, half_size=0)[0, 0]
        assert centre == pytest.approx(psf.max(), rel=0.05)
        assert 0.03 <= frame.wing_fraction <= 0.08 and frame.ellipticity <= 0.15


def test_aperture_flux_of_the_isolated_star_matches_truth(sim):
    out, truth = sim
    star = _source(truth, truth.isolated_star_source_id)
    assert star.kind == "star" and star.g_mag < 16
    for frame in truth.frames:
        data = _data(out, frame)
        x, y = star.x_pixels[frame.index], star.y_pixels[frame.index]
        radius = 2.5 * frame.seeing_fwhm_pixels
        yy, xx = np.indices(data.shape)
        r = np.hypot(xx - x, yy - y)
        background = np.median(data[(r > radius + 4) & (r < radius + 12)])
        measured = (data[r < radius] - background).sum() * SPEC.gain / SPEC.exptime
        ix, iy = round(x), round(y)
        stamp = psf_stamp(frame, x - ix, y - iy)
        h = frame.psf_stamp_half_size
        sy, sx = np.mgrid[-h : h + 1, -h : h + 1]
        fraction = stamp[np.hypot(sx - (x - ix), sy - (y - iy)) < radius].sum()
        assert 0.9 < fraction < 0.99
        expected = star.flux_e_per_s_per_frame[frame.index] * frame.transparency * fraction
        assert measured == pytest.approx(expected, rel=0.02)


def test_catalog_has_gaia_columns_and_the_special_sources(sim):
    out, truth = sim
    rows = _catalog(out)
    assert list(rows[0]) == GAIA_COLUMNS
    assert len(rows) == len(truth.sources)
    by_id = {int(row["source_id"]): row for row in rows}
    kinds = {s.kind for s in truth.sources}
    assert kinds == {"star", "galaxy", "variable", "saturated"}
    for source in truth.sources:
        row = by_id[source.source_id]
        assert float(row["ref_epoch"]) == 2016.0
        assert float(row["phot_g_mean_mag"]) == source.g_mag and float(row["pmra"]) == source.pmra
        # r_sdss from the Gaia DR3 polynomial (spec §6.10), and the zero point
        c = float(row["phot_bp_mean_mag"]) - float(row["phot_rp_mean_mag"])
        r = source.g_mag - (-0.09837 + 0.08592 * c + 0.1907 * c**2 - 0.1701 * c**3 + 0.02263 * c**4)
        assert source.r_sdss_mag == pytest.approx(r, abs=1e-9)
        assert source.flux_e_per_s == pytest.approx(10 ** (-0.4 * (r - truth.zero_point)), rel=1e-9)
    galaxy = by_id[truth.field_galaxy.source_id]
    assert float(galaxy["astrometric_excess_noise_sig"]) > 10
    variable = _source(truth, truth.variable_star.source_id)
    row = by_id[variable.source_id]
    assert variable.kind == "variable" and float(row["astrometric_excess_noise_sig"]) < 3
    assert 16 < variable.g_mag < 20 and float(row["phot_g_mean_flux_over_error"]) > 100
    assert np.ptp(variable.flux_e_per_s_per_frame) > 0.01 * variable.flux_e_per_s
    saturated = next(s for s in truth.sources if s.kind == "saturated")
    for frame in truth.frames:
        data = _data(out, frame)
        x, y = round(saturated.x_pixels[frame.index]), round(saturated.y_pixels[frame.index])
        assert data[y - 1 : y + 2, x - 1 : x + 2].max() == SPEC.saturation_adu
    assert data.max() == SPEC.saturation_adu


def test_small_frames_have_enough_usable_stars(sim):
    out, truth = sim
    config = yaml.safe_load((out / "config.yaml").read_text())
    roi = SkyCoord(SPEC.ra0 * u.deg, SPEC.dec0 * u.deg)
    by_id = {int(row["source_id"]): row for row in _catalog(out)}
    usable = 0
    for source in truth.sources:
        row = by_id[source.source_id]
        clean = float(row["astrometric_excess_noise_sig"]) < config["star_max_astrometric_excess_noise"]
        inside = all(
            12 < x < SPEC.nx - 12 and 12 < y < SPEC.ny - 12
            for x, y in zip(source.x_pixels, source.y_pixels, strict=True)
        )
        distance = roi.separation(SkyCoord(source.ra * u.deg, source.dec * u.deg)).arcsec
        usable += (
            config["star_min_gmag"] <= source.g_mag <= config["star_max_gmag"]
            and inside
            and config["ROI_size"] < distance < config["ROI_disk_radius_arcseconds"]
            and clean
            and float(row["phot_g_mean_flux_over_error"]) > config["min_phot_g_mean_flux_over_error"]
        )
    assert usable >= 15


def _centroid(
    data: np.ndarray, x: float, y: float, radius: float, masked: set[tuple[int, int]]
) -> tuple[float, float]:
    """Iterated background-subtracted first moment in a circular window."""
    yy, xx = np.indices(data.shape)
    keep = np.ones(data.shape, bool)
    for px, py in masked:
        keep[py, px] = False
    r = np.hypot(xx - x, yy - y)
    background = np.median(data[(r > 3 * radius) & (r < 3 * radius + 8) & keep])
    for _ in range(20):
        window = (np.hypot(xx - x, yy - y) < radius) & keep
        weight = np.clip(data[window] - background, 0, None)
        x, y = (weight * xx[window]).sum() / weight.sum(), (weight * yy[window]).sum() / weight.sum()
    return x, y


def test_high_proper_motion_star_is_where_the_wcs_predicts(sim):
    out, truth = sim
    fast = [s for s in truth.sources if math.hypot(s.pmra, s.pmdec) > 100]
    assert fast
    checked = 0
    for star in fast:
        coord = SkyCoord(
            star.ra * u.deg,
            star.dec * u.deg,
            pm_ra_cosdec=star.pmra * u.mas / u.yr,
            pm_dec=star.pmdec * u.mas / u.yr,
            obstime=Time(2016.0, format="jyear"),
        )
        for frame in truth.frames:
            if abs(star.x_pixels[frame.index] - frame.bad_column_x) < 8:
                continue
            header = fits.getheader(out / "raw" / frame.file_name)
            wcs = WCS(header)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ErfaWarning)
                moved = coord.apply_space_motion(new_obstime=Time(frame.mjd, format="mjd"))
            x, y = wcs.world_to_pixel(moved)
            x0, y0 = wcs.world_to_pixel_values(star.ra, star.dec)
            assert math.hypot(x - x0, y - y0) > 2.0  # the motion matters at the frame dates
            masked = {tuple(p) for p in frame.cosmic_ray_pixels}
            cx, cy = _centroid(_data(out, frame), float(x), float(y), 1.5 * frame.seeing_fwhm_pixels, masked)
            assert math.hypot(cx - x, cy - y) < 0.3
            assert math.hypot(star.x_pixels[frame.index] - x, star.y_pixels[frame.index] - y) < 0.01
            checked += 1
    assert checked >= 3


def test_config_has_every_template_key_and_matches_truth(sim):
    out, truth = sim
    config = yaml.safe_load((out / "config.yaml").read_text())
    keys = [k for k in config if k != "gaia_catalog_file"]
    assert keys == TEMPLATE_KEYS
    assert config["workdir"] == str(out.resolve())
    assert config["raw_dirs"] == [str(out.resolve() / "raw")]
    assert config["gaia_provider"] == "file"
    assert (out / config["gaia_catalog_file"]).is_file()
    assert config["ROI"] == {truth.roi_name: {"coordinates": [SPEC.ra0, SPEC.dec0]}}
    assert config["already_plate_solved"] == 1 and config["photometric_band"] == "r_sdss"
    lo, hi = config["plate_scale_interval"]
    assert lo < SPEC.pixel_scale < hi
    assert config["point_sources"] == {q.label: [q.ra, q.dec] for q in truth.quasar_images}
    assert config["ROI_disk_radius_arcseconds"] == truth.roi_disk_radius_arcsec
    assert set(config["telescope"]) == {"name", "latitude", "longitude", "elevation", "imager_name"}


def test_roi_is_observable_at_night(sim):
    out, truth = sim
    site = yaml.safe_load((out / "config.yaml").read_text())["telescope"]
    observer = ephem.Observer()
    observer.lat, observer.lon = str(site["latitude"]), str(site["longitude"])
    observer.elevation = site["elevation"]
    target = ephem.FixedBody()
    target._ra, target._dec = math.radians(SPEC.ra0), math.radians(SPEC.dec0)
    for frame in truth.frames:
        observer.date = frame.mjd + 2400000.5 - 2415020.0
        target.compute(observer)
        assert math.degrees(target.alt) > 30
        assert math.degrees(ephem.Sun(observer).alt) < -18


def test_quasar_images(sim):
    _, truth = sim
    roi = SkyCoord(SPEC.ra0 * u.deg, SPEC.dec0 * u.deg)
    images = [SkyCoord(q.ra * u.deg, q.dec * u.deg) for q in truth.quasar_images]
    assert [q.label for q in truth.quasar_images] == ["A", "B", "C", "D"]
    assert all(roi.separation(c).arcsec < 1.5 for c in images)
    pairs = [a.separation(b).arcsec for i, a in enumerate(images) for b in images[i + 1 :]]
    assert min(pairs) < 0.7
    catalog = SkyCoord([s.ra for s in truth.sources] * u.deg, [s.dec for s in truth.sources] * u.deg)
    assert roi.separation(catalog).arcsec.min() > 5.0  # the quasar is not in the catalogue
    for q in truth.quasar_images:
        mags = np.array(q.mag_per_frame)
        np.testing.assert_allclose(q.flux_e_per_s_per_frame, 10 ** (-0.4 * (mags - truth.zero_point)))
        for frame in truth.frames:
            assert frame.quasar_fluxes_e_per_s[q.label] == q.flux_e_per_s_per_frame[frame.index]


def test_two_image_quasar_and_bad_spec(tmp_path):
    truth = simulate_dataset(tmp_path, SimulationSpec(nx=256, ny=256, n_frames=1, n_quasar_images=2))
    assert [q.label for q in truth.quasar_images] == ["A", "B"]
    with pytest.raises(ValueError, match="n_quasar_images"):
        simulate_dataset(tmp_path, SimulationSpec(nx=256, ny=256, n_quasar_images=5))
    with pytest.raises(ValueError, match="256x256"):
        simulate_dataset(tmp_path, SimulationSpec(nx=128, ny=128))


def test_cosmic_rays_and_bad_column_are_in_the_data(sim):
    out, truth = sim
    assert any(f.cosmic_ray_near_star_source_id is not None for f in truth.frames)
    for frame in truth.frames:
        data = _data(out, frame)
        assert len(frame.cosmic_ray_pixels) >= 3
        padded = np.pad(data, 2, mode="edge")
        for x, y in frame.cosmic_ray_pixels:
            local = np.median(padded[y : y + 5, x : x + 5])
            assert data[y, x] - local > 1000, (x, y)
            assert math.hypot(x - frame.roi_pixel[0], y - frame.roi_pixel[1]) > 5
        if frame.cosmic_ray_near_star_source_id is not None:
            star = _source(truth, frame.cosmic_ray_near_star_source_id)
            sx, sy = star.x_pixels[frame.index], star.y_pixels[frame.index]
            assert min(math.hypot(x - sx, y - sy) for x, y in frame.cosmic_ray_pixels) < 6
            assert star.kind == "star"
        column = frame.bad_column_x
        assert column == truth.bad_column_x
        excess = np.median(data[:, column]) - np.median(data[:, [column - 3, column + 3]])
        assert excess > 500
