"""Plate solutions, footprints, reference stars and cutouts on simulated frames, against truth."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.wcs import WCS
from sqlalchemy import select

from lightcurver_dagster.defs.automation import automation_sensor
from lightcurver_ops import paths
from lightcurver_ops.cutouts import read_frame_cutouts
from lightcurver_ops.db.schema import combined_footprint, frame_wcs, stars, stars_in_frames
from lightcurver_ops.frame_cutouts import ROI_STAMP
from lightcurver_ops.simulate import SimulationSpec, SimulationTruth, simulate_dataset
from tests.dagster.pipeline import Pipeline

PER_FRAME_START = ("calibrated_frame", "plate_solution")
SPEC = SimulationSpec(n_frames=3, nx=512, ny=512, seed=7)


def _edit_config(pipeline: Pipeline, **values: object) -> None:
    config = yaml.safe_load(pipeline.config_path.read_text())
    pipeline.config_path.write_text(yaml.safe_dump(config | values, sort_keys=False))
    pipeline.reload_config()


def _true_wcs(truth: SimulationTruth, key: str) -> WCS:
    frame = next(f for f in truth.frames if Path(f.file_name).stem == key)
    return WCS(fits.Header(frame.wcs_header))


def _corner_error(stored_header: str, true_wcs: WCS, shape: tuple[int, int]) -> float:
    """Largest pixel distance, over the frame corners and centre, between a stored WCS and the truth."""
    ny, nx = shape
    pixels = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1], [nx / 2, ny / 2]], float)
    ra, dec = true_wcs.all_pix2world(pixels[:, 0], pixels[:, 1], 0)
    x, y = WCS(fits.Header.fromstring(stored_header)).all_world2pix(ra, dec, 0)
    return float(np.max(np.hypot(x - pixels[:, 0], y - pixels[:, 1])))


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    root = tmp_path / "sim"
    truth = simulate_dataset(root, SPEC)
    return Pipeline(root, truth)


def _stored_wcs(pipeline: Pipeline) -> dict[str, dict]:
    rows = pipeline.rows()
    ids = {row["id"]: key for key, row in rows.items()}
    with pipeline.engine.connect() as connection:
        return {ids[row["frame_id"]]: dict(row) for row in connection.execute(select(frame_wcs)).mappings()}


def test_whole_chain_matches_truth(pipeline: Pipeline):
    truth = pipeline.truth
    pipeline.ingest()  # the sensor's run: calibrated_frame and plate_solution
    for name in ("footprints", "reference_stars", "cutouts", "regions_h5"):
        assert pipeline.materialize(name).success

    rows = pipeline.rows()
    for frame in truth.frames:
        row = rows[Path(frame.file_name).stem]
        assert row["plate_solved"] == 1 and row["roi_in_footprint"] == 1 and row["eliminated"] == 0
        assert row["pixel_scale"] == pytest.approx(truth.spec.pixel_scale, rel=1e-3)
        assert row["seeing_arcseconds"] == pytest.approx(frame.seeing_fwhm_arcsec, rel=0.10)
        assert row["angle_to_north"] == pytest.approx(-frame.rotation_deg, abs=0.05)

    with pipeline.engine.connect() as connection:
        assert connection.execute(select(combined_footprint)).first() is not None
        chosen = [dict(r) for r in connection.execute(select(stars)).mappings()]
        in_frames = connection.execute(select(stars_in_frames)).all()
    kinds = {str(s.source_id): s.kind for s in truth.sources}
    assert len(chosen) >= 6
    assert all(kinds[s["gaia_id"]] in ("star", "variable") for s in chosen)
    config = pipeline.config
    assert all(config.star_min_gmag <= s["gmag"] <= config.star_max_gmag for s in chosen)
    galaxy, saturated = truth.field_galaxy.source_id, next(s for s in truth.sources if s.kind == "saturated")
    assert str(galaxy) not in {s["gaia_id"] for s in chosen}
    assert str(saturated.source_id) not in {s["gaia_id"] for s in chosen}
    ordered = sorted(chosen, key=lambda s: s["distance_to_roi_arcsec"])
    assert [s["name"] for s in ordered][:3] == ["a", "b", "c"]
    assert in_frames

    workdir = config.workdir
    assert (workdir / paths.FOOTPRINTS_PLOT).stat().st_size > 5000
    assert (workdir / paths.STARS_PLOT).stat().st_size > 5000
    assert (workdir / paths.REGIONS_EXPORT).is_file()
    sources = {str(s.source_id): s for s in truth.sources}
    for frame in truth.frames:
        key = Path(frame.file_name).stem
        stamps, attributes, _ = read_frame_cutouts(workdir / paths.cutouts_relpath(key))
        assert ROI_STAMP in stamps and attributes["partition_key"] == key
        for name, stamp in stamps.items():
            if name == ROI_STAMP:
                continue
            source = sources[name]
            x, y = source.x_pixels[frame.index], source.y_pixels[frame.index]
            assert np.hypot(stamp.position[0] - x, stamp.position[1] - y) < 0.3  # proper motion applied
            centre = np.array(stamp.origin) + stamp.size // 2
            assert np.all(np.abs(np.array([x, y]) - centre) <= 0.5 + 1e-6)  # centred in its stamp


def test_adapted_and_catalogue_solutions_match_truth(pipeline: Pipeline):
    pipeline.ingest()  # all frames solved from their headers
    _edit_config(pipeline, already_plate_solved=False, plate_solving_strategy="adapt_wcs_from_reference")
    assert pipeline.materialize("plate_solution").success
    stored = _stored_wcs(pipeline)
    first = Path(pipeline.truth.frames[0].file_name).stem
    assert stored[first]["strategy"] == "adapt_wcs_from_reference"  # adapted from another frame
    for key, row in stored.items():
        assert row["strategy"] == "adapt_wcs_from_reference"
        assert _corner_error(row["wcs_header"], _true_wcs(pipeline.truth, key), (SPEC.ny, SPEC.nx)) < 0.1

    _edit_config(pipeline, plate_solving_strategy="alternate_gaia_solve")
    assert pipeline.materialize("plate_solution").success
    for key, row in _stored_wcs(pipeline).items():
        assert row["strategy"] != "already_plate_solved"
        assert _corner_error(row["wcs_header"], _true_wcs(pipeline.truth, key), (SPEC.ny, SPEC.nx)) < 0.1
    assert all(row["eliminated"] == 0 for row in pipeline.rows().values())


def test_unsolvable_frame_and_frame_without_roi_are_eliminated(pipeline: Pipeline):
    raw = sorted(pipeline.raw.glob("*.fits"))
    with fits.open(raw[0]) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data
    for key in list(header):
        if key.startswith(("CRVAL", "CRPIX", "CD", "CTYPE", "CUNIT", "WCSAXES", "RADESYS", "EQUINOX")):
            del header[key]
    fits.PrimaryHDU(data, header).writeto(pipeline.raw / "no_wcs.fits")
    with fits.open(raw[1]) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data
    header["CRVAL1"] = (header["CRVAL1"] + 2.0) % 360  # points two degrees away from the ROI
    fits.PrimaryHDU(data, header).writeto(pipeline.raw / "elsewhere.fits")
    pipeline.ingest()
    rows = pipeline.rows()
    assert rows["no_wcs"]["eliminated"] == 1 and rows["no_wcs"]["eliminated_stage"] == "plate_solution"
    assert "no celestial WCS" in rows["no_wcs"]["comment"]
    assert rows["elsewhere"]["eliminated"] == 1 and "outside the frame" in rows["elsewhere"]["comment"]
    for name in ("footprints", "reference_stars", "cutouts"):
        assert pipeline.materialize(name).success
    workdir = pipeline.config.workdir
    assert not (workdir / paths.cutouts_relpath("no_wcs")).exists()
    assert not (workdir / paths.cutouts_relpath("elsewhere")).exists()
    good = [Path(f.file_name).stem for f in pipeline.truth.frames]
    assert all((workdir / paths.cutouts_relpath(key)).is_file() for key in good)
    assert pipeline.instance.get_materialized_partitions(dg.AssetKey("cutouts")) == set(rows)


def test_too_few_stars_fails_reference_stars_with_the_numbers(pipeline: Pipeline):
    pipeline.ingest()
    assert pipeline.materialize("footprints").success
    _edit_config(pipeline, min_number_stars=5000)
    result = pipeline.materialize("reference_stars", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message + (
        failure.step_failure_data.user_failure_data.description or ""
    )
    assert "5000" in message


def test_automation_follows_frames_but_a_new_star_set_does_not_reprocess_them(pipeline: Pipeline):
    defs = pipeline.definitions
    assert defs.resolve_sensor_def(automation_sensor.name).default_status == dg.DefaultSensorStatus.RUNNING
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=pipeline.instance).cursor

    def requested(*names: str) -> dict[str, int]:
        nonlocal cursor
        evaluation = dg.evaluate_automation_conditions(defs=defs, instance=pipeline.instance, cursor=cursor)
        cursor = evaluation.cursor
        return {name: evaluation.get_num_requested(dg.AssetKey(name)) for name in names}

    pipeline.ingest()
    assert requested("footprints", "reference_stars", "cutouts") == {
        "footprints": 1,
        "reference_stars": 1,  # built as soon as it can be: after footprints, in the same request
        "cutouts": 0,  # no reference stars yet
    }
    assert pipeline.materialize("footprints").success
    assert pipeline.materialize("reference_stars").success
    assert requested("cutouts", "reference_stars") == {
        "cutouts": len(pipeline.truth.frames),
        "reference_stars": 0,
    }
    assert pipeline.materialize("cutouts").success
    requested("cutouts")
    assert pipeline.materialize("reference_stars").success  # a new baseline...
    assert requested("cutouts") == {"cutouts": 0}  # ...is not a silent reprocess
