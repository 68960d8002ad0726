"""Files dropped into a raw directory become calibrated frames, unattended, on a real Dagster instance.

The sensor runs against a real (ephemeral) instance; its partition requests are applied as the
daemon would, and its run requests executed in-process; results are compared with the
simulator's truth.
"""

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from astropy.io import fits

from lightcurver_dagster.defs.per_frame import calibrated_frame as calibrated_frame_module
from lightcurver_ops.config import load_config
from lightcurver_ops.simulate import SimulationSpec, simulate_dataset
from tests.dagster.pipeline import Pipeline, age, age_all

CALIBRATED_FRAME = dg.AssetKey("calibrated_frame")
SETTLE_SECONDS = 5.0


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    root = tmp_path / "sim"
    truth = simulate_dataset(root, SimulationSpec(n_frames=3, nx=320, ny=320, seed=5))
    config = yaml.safe_load((root / "config.yaml").read_text())
    config["ingest_settle_seconds"] = SETTLE_SECONDS
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Pipeline(root, truth)


def _write_variant(source: Path, target: Path, *, data=None, drop: str | None = None, **cards) -> None:
    with fits.open(source) as hdul:
        header = hdul[0].header.copy()
        pixels = hdul[0].data.copy() if data is None else data
    if drop:
        del header[drop]
    for key, value in cards.items():
        header[key] = value
    fits.PrimaryHDU(pixels, header).writeto(target)


def test_dropped_files_become_calibrated_frames_matching_truth(pipeline: Pipeline):
    good = sorted(pipeline.raw.glob("*.fits"))
    corrupt = pipeline.raw / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\x00" * 100)
    truncated = pipeline.raw / "truncated.fits"
    truncated.write_bytes(good[0].read_bytes()[: good[0].stat().st_size // 2])
    _write_variant(good[0], pipeline.raw / "no_gain.fits", drop="GAIN")
    _write_variant(good[1], pipeline.raw / "zero_exposure.fits", EXPTIME=0.0)
    nan_data = np.full(fits.getdata(good[0]).shape, np.nan, dtype=np.float32)
    _write_variant(good[2], pipeline.raw / "all_nan.fits", data=nan_data)
    raw_before = {path.name: path.read_bytes() for path in pipeline.raw.iterdir()}

    waiting = pipeline.tick()  # everything was just written: nothing is taken yet
    assert isinstance(waiting, dg.SkipReason)
    assert "8 still being written" in waiting.skip_message

    age_all(pipeline.raw)
    result = pipeline.tick()
    assert isinstance(result, dg.SensorResult)
    assert len(result.run_requests) == 1  # one range run for the whole batch
    runs = pipeline.execute(result)
    assert all(run.success for run in runs)

    keys = pipeline.instance.get_dynamic_partitions("frames")
    assert len(keys) == 8
    assert pipeline.instance.get_materialized_partitions(CALIBRATED_FRAME) == set(keys)
    rows = pipeline.rows()
    assert set(rows) == set(keys)

    reasons = {key: rows[key]["comment"] for key in rows if rows[key]["eliminated"]}
    assert set(reasons) == {"corrupt", "truncated", "no_gain", "zero_exposure", "all_nan"}
    assert "GAIN" in reasons["no_gain"]
    assert "exptime" in reasons["zero_exposure"]
    assert "NaN" in reasons["all_nan"]
    for key in ("corrupt", "truncated"):
        assert reasons[key]

    workdir = pipeline.config.workdir
    for frame in pipeline.truth.frames:
        row = rows[pipeline.key_of(frame.file_name)]
        assert not row["eliminated"]
        assert row["seeing_pixels"] == pytest.approx(frame.seeing_fwhm_pixels, rel=0.10)
        assert row["sky_level_electron_per_second"] == pytest.approx(frame.sky_level_e_per_s, rel=0.02)
        spec = pipeline.truth.spec  # sky photon noise and read noise, in e-/s
        noise = np.sqrt(frame.sky_level_e_per_s * spec.exptime + spec.read_noise**2) / spec.exptime
        assert row["background_rms_electron_per_second"] == pytest.approx(noise, rel=0.05)  # crowded 320 px
        assert row["mjd"] == pytest.approx(frame.mjd)
        assert row["n_sources"] > 10
        assert 1.0 <= row["airmass"] < 3.0
        image = fits.getdata(workdir / row["image_relpath"])
        assert (
            image.dtype.kind == "f"
            and image.dtype.itemsize == 4
            and fits.getheader(workdir / row["image_relpath"])["BUNIT"] == "ELPERSEC"
        )
        assert (workdir / row["sources_relpath"]).is_file()
        plot = workdir / "plots" / "source_extraction" / f"{row['partition_key']}.jpg"
        assert plot.stat().st_size > 10_000

    assert isinstance(pipeline.tick(), dg.SkipReason)  # nothing new: the second tick requests nothing
    assert {path.name: path.read_bytes() for path in pipeline.raw.iterdir()} == raw_before  # raw untouched


def test_rematerialising_replaces_rows_and_files(pipeline: Pipeline):
    age_all(pipeline.raw)
    pipeline.execute(pipeline.tick())
    before = pipeline.rows()
    keys = pipeline.instance.get_dynamic_partitions("frames")
    rerun = pipeline.job.execute_in_process(
        instance=pipeline.instance,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    assert rerun.success
    after = pipeline.rows()
    assert {k: v["id"] for k, v in after.items()} == {k: v["id"] for k, v in before.items()}
    assert {k: v["seeing_pixels"] for k, v in after.items()} == {
        k: v["seeing_pixels"] for k, v in before.items()
    }
    assert len(list((pipeline.config.workdir / "frames").glob("*.fits"))) == 2 * len(keys)


def test_changed_file_reruns_only_its_frame(pipeline: Pipeline):
    age_all(pipeline.raw)
    pipeline.execute(pipeline.tick())
    target = sorted(pipeline.raw.glob("*.fits"))[1]
    with fits.open(target) as hdul:
        data, header = hdul[0].data * 1.5, hdul[0].header
        fits.PrimaryHDU(data, header).writeto(target, overwrite=True)
    age(target, 30)
    result = pipeline.tick()
    assert [run.partition_key for run in result.run_requests] == [target.stem]
    assert not result.dynamic_partitions_requests
    before = pipeline.rows()[target.stem]
    assert all(run.success for run in pipeline.execute(result))
    after = pipeline.rows()[target.stem]
    assert after["id"] == before["id"]
    assert after["sky_level_electron_per_second"] == pytest.approx(
        1.5 * before["sky_level_electron_per_second"], rel=0.02
    )


def test_same_name_in_second_raw_directory(pipeline: Pipeline, tmp_path: Path):
    second = tmp_path / "raw2"
    second.mkdir()
    original = sorted(pipeline.raw.glob("*.fits"))[0]
    shutil.copy(original, second / original.name)  # an identical copy
    _write_variant(original, second / "other.fits", EXPTIME=600.0)
    config = yaml.safe_load(pipeline.config_path.read_text())
    config["raw_dirs"] = [str(pipeline.raw), str(second)]
    pipeline.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    pipeline.config = load_config(pipeline.config_path)
    age_all(pipeline.raw)
    age_all(second)
    assert all(run.success for run in pipeline.execute(pipeline.tick()))
    rows = pipeline.rows()
    assert len(rows) == 5
    copies = [key for key in rows if key.startswith(f"{original.stem}-")]
    assert len(copies) == 1
    assert rows[copies[0]]["eliminated"] == 1
    assert f"same content as frame {original.stem}" in rows[copies[0]]["comment"]
    assert rows[original.stem]["eliminated"] == 0
    assert rows["other"]["eliminated"] == 0


def test_unexpected_error_in_one_frame_fails_the_run_but_keeps_the_others(pipeline, monkeypatch):
    real_import = calibrated_frame_module.import_raw_file
    victim = sorted(pipeline.raw.glob("*.fits"))[1].stem

    def flaky(config, parser, partition_key, raw_path, find_duplicate):
        if partition_key == victim:
            raise RuntimeError("disk on fire")
        return real_import(config, parser, partition_key, raw_path, find_duplicate)

    monkeypatch.setattr(calibrated_frame_module, "import_raw_file", flaky)
    age_all(pipeline.raw)
    (run,) = pipeline.execute(pipeline.tick())
    assert not run.success
    failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
    assert victim in failure.step_failure_data.error.message
    assert "disk on fire" in failure.step_failure_data.error.message
    materialized = pipeline.instance.get_materialized_partitions(CALIBRATED_FRAME)
    assert materialized == set(pipeline.instance.get_dynamic_partitions("frames")) - {victim}
    assert set(pipeline.rows()) == materialized
