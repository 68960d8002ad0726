"""The automation conditions and sensors: what builds a baseline, which runs carry the accelerator tag."""

import json

import dagster as dg
import pytest

from lightcurver_dagster.definitions import defs
from lightcurver_dagster.defs.automation import (
    ACCELERATOR_RUN_TAGS_ENV_VAR,
    AUTOMATION_INTERVAL_ENV_VAR,
    accelerator_automation_sensor,
    accelerator_run_tags,
    automation_sensor,
    follows_frames,
    follows_own_frame,
    interval_seconds,
    when_missing,
)
from lightcurver_dagster.defs.decorators import ACCELERATOR, DEVICE_TAG

frames = dg.DynamicPartitionsDefinition(name="frames")


@dg.asset(partitions_def=frames)
def per_frame(): ...


@dg.asset
def catalogue(): ...


@dg.asset(deps=[per_frame, catalogue], automation_condition=when_missing())
def baseline(): ...


@dg.asset(deps=[per_frame, baseline], automation_condition=follows_frames())
def product(): ...


@dg.asset(partitions_def=frames, deps=[per_frame], automation_condition=follows_own_frame())
def solved(): ...


class Ticks:
    """The automation of ``assets`` evaluated on ``instance`` tick after tick, as the daemon does."""

    def __init__(self, instance: dg.DagsterInstance, *assets: dg.AssetsDefinition) -> None:
        self.instance, self.defs, self.cursor = instance, dg.Definitions(assets=list(assets)), None

    def requested(self, asset: dg.AssetsDefinition) -> int:
        """One tick; how many partitions of ``asset`` it requests."""
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return result.get_num_requested(asset.key)


def test_a_baseline_waits_for_every_input_and_at_least_one_frame():
    instance = dg.DagsterInstance.ephemeral()
    ticks = Ticks(instance, per_frame, catalogue, baseline)
    assert ticks.requested(baseline) == 0  # nothing exists
    assert dg.materialize([catalogue], instance=instance).success
    assert ticks.requested(baseline) == 0  # no frame registered: no partition is missing, nothing to fit
    instance.add_dynamic_partitions("frames", ["a", "b"])
    assert dg.materialize([per_frame], instance=instance, partition_key="a").success
    assert ticks.requested(baseline) == 0  # frame b is still missing
    assert dg.materialize([per_frame], instance=instance, partition_key="b").success
    assert ticks.requested(baseline) == 1


def test_an_all_frames_product_waits_for_its_baseline():
    instance = dg.DagsterInstance.ephemeral()
    ticks = Ticks(instance, per_frame, catalogue, product)
    ticks.requested(product)
    instance.add_dynamic_partitions("frames", ["a"])
    assert dg.materialize([per_frame], instance=instance, partition_key="a").success
    assert ticks.requested(product) == 0  # a frame updated, but there is no baseline
    instance.report_runless_asset_event(dg.AssetMaterialization(baseline.key))
    assert dg.materialize([per_frame], instance=instance, partition_key="a").success
    assert ticks.requested(product) == 1


def test_accelerator_assets_have_their_own_automation_sensor_tagging_the_runs():
    graph = defs.resolve_asset_graph()
    on_accelerator = {
        key.to_user_string() for key in accelerator_automation_sensor.asset_selection.resolve(graph)
    }
    assert on_accelerator == {"psf_model", "star_fluxes", "roi_model", "roi_fluxes"}
    for name in on_accelerator:
        node = graph.get(dg.AssetKey(name))
        assert node.pools == {ACCELERATOR}
    assert accelerator_automation_sensor.run_tags == {DEVICE_TAG: ACCELERATOR}
    assert not on_accelerator & {k.to_user_string() for k in automation_sensor.asset_selection.resolve(graph)}
    for sensor in (automation_sensor, accelerator_automation_sensor):
        assert defs.resolve_sensor_def(sensor.name).default_status == dg.DefaultSensorStatus.RUNNING


def test_sensor_intervals_from_the_environment(monkeypatch):
    monkeypatch.setenv(AUTOMATION_INTERVAL_ENV_VAR, "5")
    assert interval_seconds(AUTOMATION_INTERVAL_ENV_VAR) == 5
    monkeypatch.delenv(AUTOMATION_INTERVAL_ENV_VAR)
    assert interval_seconds(AUTOMATION_INTERVAL_ENV_VAR) == 30
    for wrong in ("0", "soon"):
        monkeypatch.setenv(AUTOMATION_INTERVAL_ENV_VAR, wrong)
        with pytest.raises(ValueError, match=AUTOMATION_INTERVAL_ENV_VAR):
            interval_seconds(AUTOMATION_INTERVAL_ENV_VAR)


def test_accelerator_run_tags_from_the_environment(monkeypatch):
    gpu = {"container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}}}
    tags = {"dagster-k8s/config": gpu, "team": "lenses"}
    monkeypatch.setenv(ACCELERATOR_RUN_TAGS_ENV_VAR, json.dumps(tags))
    tags = accelerator_run_tags()
    assert json.loads(tags["dagster-k8s/config"]) == gpu
    assert tags["team"] == "lenses"
    assert tags[DEVICE_TAG] == ACCELERATOR
    for wrong, message in (("[1]", "JSON object"), ("{oops", "not valid JSON")):
        monkeypatch.setenv(ACCELERATOR_RUN_TAGS_ENV_VAR, wrong)
        with pytest.raises(ValueError, match=message):
            accelerator_run_tags()


def test_a_frame_updated_while_its_all_frames_product_runs_is_not_lost():
    """The product's run started before frame b updated: that run's materialisation must not count as
    having handled b (Dagster's ``eager()`` resets on it, and b would never reach the product)."""
    instance = dg.DagsterInstance.ephemeral()
    ticks = Ticks(instance, per_frame, catalogue, product)
    instance.add_dynamic_partitions("frames", ["a", "b"])
    instance.report_runless_asset_event(dg.AssetMaterialization(baseline.key))
    ticks.requested(product)
    for key in ("a", "b"):
        assert dg.materialize([per_frame], instance=instance, partition_key=key).success
    assert ticks.requested(product) == 1  # both frames exist: the product is requested, its run starts
    assert ticks.requested(product) == 0  # requested on the previous tick, not yet done
    assert dg.materialize([per_frame], instance=instance, partition_key="b").success  # b updates
    assert dg.materialize([product], instance=instance).success  # the run that started before b ends
    assert ticks.requested(product) == 1  # b's update still reaches the product
    assert ticks.requested(product) == 0


def test_a_frame_made_with_its_input_in_one_run_is_not_made_again_until_the_input_updates():
    instance = dg.DagsterInstance.ephemeral()
    ticks = Ticks(instance, per_frame, solved)
    ticks.requested(solved)
    instance.add_dynamic_partitions("frames", ["a"])
    assert ticks.requested(solved) == 0  # a new frame, its input not there yet
    # one run making both, as the raw-frames sensor's runs make a frame and its plate solution
    assert dg.materialize([per_frame, solved], instance=instance, partition_key="a").success
    assert ticks.requested(solved) == 0
    assert dg.materialize([per_frame], instance=instance, partition_key="a").success
    assert ticks.requested(solved) == 1
    assert ticks.requested(solved) == 0
