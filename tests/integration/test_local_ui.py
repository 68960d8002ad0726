"""The laptop set-up, live: ``lightcurver-dagster ui`` (``dagster dev``: webserver, daemon, code
server) on a SQLite instance in the work directory. Two nights of simulated frames are dropped into
the raw directory; the raw-frames sensor and the automation take every frame to the light curves, the
second night processing only its own frames. Then the UI renders in headless Chromium."""

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from lightcurver_dagster.cli import DAGSTER_HOME_DIRNAME
from tests.integration.browser import browser_page
from tests.integration.live import (
    PER_FRAME_ASSETS,
    Telescope,
    last_event_id,
    materialized_since,
    wait_for_frames,
)
from tests.integration.processes import free_port, running, wait_for_webserver

pytestmark = pytest.mark.integration


@dataclass
class LiveStack:
    telescope: Telescope
    instance: dg.DagsterInstance
    url: str
    waves: list[list[str]]
    second_wave_events: dict[str, list[str]]
    seconds: list[float]


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory) -> Iterator[LiveStack]:
    telescope = Telescope.simulate(tmp_path_factory.mktemp("local") / "sim")
    logs = telescope.root / "logs"
    port = free_port()
    cli = Path(sys.executable).with_name("lightcurver-dagster")
    command = [str(cli), "ui", str(telescope.config_path), "--port", str(port)]
    with running("dagster-dev", command, os.environ | telescope.environment(), logs) as process:
        url = f"http://127.0.0.1:{port}"
        wait_for_webserver(url, process)
        instance = dg.DagsterInstance.from_config(str(telescope.config.workdir / DAGSTER_HOME_DIRNAME))
        waves, seconds = [], []
        waves.append(telescope.drop(0))
        seconds.append(wait_for_frames(instance, telescope.config, waves[0], logs))
        marker = last_event_id(instance)
        waves.append(telescope.drop(1))
        seconds.append(wait_for_frames(instance, telescope.config, waves[1], logs))
        time.sleep(10)  # let the automation settle: nothing more may come for the first night
        events = materialized_since(instance, marker)
        print(f"local stack: first night {seconds[0]:.0f} s, second night {seconds[1]:.0f} s")
        yield LiveStack(telescope, instance, url, waves, events, seconds)


def test_both_nights_reach_the_light_curves_and_the_second_costs_its_own_frames(local_stack: LiveStack):
    first, second = local_stack.waves
    for name in PER_FRAME_ASSETS:
        partitions = local_stack.instance.get_materialized_partitions(dg.AssetKey(name))
        assert set(first) | set(second) <= partitions, name
        processed = sorted(local_stack.second_wave_events[name])
        assert processed == sorted(second), name  # each new frame once, no old frame again


ARTIFACTS_ENV_VAR = "LIGHTCURVER_TEST_ARTIFACTS"
"""Where the UI screenshots go (default ``test-artifacts/`` in the repository)."""


@pytest.fixture
def artifacts() -> Path:
    default = Path(__file__).resolve().parents[2] / "test-artifacts"
    return Path(os.environ.get(ARTIFACTS_ENV_VAR, default)) / "ui"


def test_the_ui_renders_the_graph_the_frames_the_sensors_and_a_psf(local_stack: LiveStack, artifacts: Path):
    first, second = local_stack.waves
    url = local_stack.url
    pages = {
        "asset_graph": (
            f"{url}/assets/psf_model?view=lineage&lineageScope=neighbors&lineageDepth=9",
            ["calibrated_frame", "psf_model", "roi_model", "light_curves"],
        ),
        "frames_partitions": (
            f"{url}/assets/calibrated_frame?view=partitions",
            [first[0], second[-1], f"Materialized ({len(first) + len(second)})"],
        ),
        "automation": (
            f"{url}/automation",
            ["raw_frames_sensor", "lightcurver_automation", "lightcurver_accelerator_automation"],
        ),
        "psf_metadata": (
            f"{url}/assets/psf_model?view=partitions&partition={first[0]}",
            ["reduced_chi2", "moffat_fwhm_pixels", "converged"],
        ),
    }
    with browser_page() as page:
        for name, (address, expected) in pages.items():
            page.open(address, *expected, dismiss="Skip")  # Dagster's newsletter prompt
            shot = page.screenshot(artifacts / f"{name}.png")
            assert shot.stat().st_size > 10_000, name
    assert not page.errors, page.errors
