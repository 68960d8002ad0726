"""Declarative automation: when each asset updates by itself, and the sensor that evaluates it.

- All-frames assets follow their frames as soon as any frame updates, even while some frame
  partitions are missing (plain ``eager()`` would wait forever for a frame that never
  materialises).
- Per-frame assets downstream of an all-frames baseline follow their own frame only: a new
  baseline does not silently reprocess the archive (that is an explicit backfill).
- An all-frames asset runs once more when a frame updated during its run (plain ``eager()``
  forgets that update when the run ends).
"""

import json
import os

import dagster as dg

from lightcurver_dagster.defs.decorators import ACCELERATOR, DEVICE_TAG

AC = dg.AutomationCondition

BASELINE_CRON_ENV_VAR = "LIGHTCURVER_BASELINE_CRON"
"""Cron (UTC) on which baselines are rebuilt from the frames so far; default daily at noon UTC."""
DEFAULT_BASELINE_CRON = "0 12 * * *"


def inputs_exist() -> dg.AutomationCondition:
    """Every input exists (or is requested in the same tick), with at least one frame for the
    per-frame ones (with no frame registered no partition is missing, so ``~any_deps_missing()``
    alone holds on an empty data set)."""
    return AC.all_deps_match(~AC.missing() | AC.will_be_requested())


def input_updated_during_run() -> dg.AutomationCondition:
    """An input updated while the target was queued or running, or in the tick its run ended; true
    until the target is next requested in a tick without such an update.

    ``eager()`` forgets an input's update once the target updates, so a frame finishing while an
    all-frames asset runs (that run read the frames before it) never reaches the asset. With this
    such an update requests one more run once the running one is over.
    """
    during = AC.any_deps_updated() & (AC.in_progress() | AC.newly_updated())
    requested = ((AC.newly_requested() & ~during) | AC.initial_evaluation()).with_label("requested")
    return during.since(requested).with_label("input updated during its run")


def follows_frames() -> dg.AutomationCondition:
    """For an all-frames asset: update after any frame updates, whether or not all frames exist,
    once every input exists (a light curve needs the ROI model, not only some frame's zero point),
    and once more after an input updated during its run (:func:`input_updated_during_run`)."""
    updated = AC.eager().without(~AC.any_deps_missing())
    rerun = input_updated_during_run() & ~AC.any_deps_in_progress() & ~AC.in_progress()
    return (updated | rerun) & inputs_exist()


def follows_own_frame() -> dg.AutomationCondition:
    """For a per-frame asset: update when its own frame's upstream updates."""
    return AC.eager()


def follows_own_frame_not(*baselines: str) -> dg.AutomationCondition:
    """For a per-frame asset: as :func:`follows_own_frame`, ignoring updates of the ``baselines``
    (all-frames assets) it reads; they must exist, but a new one does not re-run every frame."""
    ignored = dg.AssetSelection.assets(*baselines)
    return AC.eager().replace("any_deps_updated", AC.any_deps_updated().ignore(ignored))


def when_missing() -> dg.AutomationCondition:
    """For a baseline: built when missing once its inputs exist; rebuilt on demand.

    ``AutomationCondition.on_missing()`` only acts on targets that become missing after the condition
    is first evaluated, so a baseline missing from the start would never be built. A failed attempt
    is not repeated every tick: fix the cause (the message says which) and materialise it.
    """
    return (
        AC.missing()
        & inputs_exist()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & ~AC.execution_failed()
    )


def rebuilt_daily() -> dg.AutomationCondition:
    """For a baseline that should follow the data: built when missing, rebuilt on the baseline cron
    (``LIGHTCURVER_BASELINE_CRON``) once its inputs changed since the last tick, and on demand."""
    cron = os.environ.get(BASELINE_CRON_ENV_VAR, DEFAULT_BASELINE_CRON)
    return when_missing() | AC.on_cron(cron, cron_timezone="UTC")


AUTOMATION_INTERVAL_ENV_VAR = "LIGHTCURVER_AUTOMATION_INTERVAL_SECONDS"
"""Seconds between evaluations of the automation sensors (default 30)."""


def interval_seconds(env_var: str, default: int = 30) -> int:
    """A sensor's minimum interval from ``env_var`` (seconds, at least 1), else ``default``."""
    value = os.environ.get(env_var, str(default))
    try:
        seconds = int(value)
    except ValueError:
        raise ValueError(f"{env_var}={value!r} is not a whole number of seconds") from None
    if seconds < 1:
        raise ValueError(f"{env_var}={value!r} must be at least 1 second")
    return seconds


ACCELERATOR_RUN_TAGS_ENV_VAR = "LIGHTCURVER_ACCELERATOR_RUN_TAGS"
"""JSON object of further tags for the automation's accelerator runs, e.g. a ``dagster-k8s/config``
placing them on GPU nodes (``deploy/scale-out/kubernetes.yaml``); object values are JSON-encoded."""


def accelerator_run_tags() -> dict[str, str]:
    """Tags of the accelerator runs: ``DEVICE_TAG`` and those of ``LIGHTCURVER_ACCELERATOR_RUN_TAGS``."""
    text = os.environ.get(ACCELERATOR_RUN_TAGS_ENV_VAR, "{}")
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ACCELERATOR_RUN_TAGS_ENV_VAR} is not valid JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise ValueError(f"{ACCELERATOR_RUN_TAGS_ENV_VAR} must be a JSON object of tags")
    tags = {key: value if isinstance(value, str) else json.dumps(value) for key, value in extra.items()}
    return tags | {DEVICE_TAG: ACCELERATOR}


ON_ACCELERATOR = dg.AssetSelection.tag(DEVICE_TAG, ACCELERATOR)

automation_sensor = dg.AutomationConditionSensorDefinition(
    "lightcurver_automation",
    target=dg.AssetSelection.all() - ON_ACCELERATOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=interval_seconds(AUTOMATION_INTERVAL_ENV_VAR),
    description="Materialises the CPU assets whose automation conditions say so (ships running).",
)

accelerator_automation_sensor = dg.AutomationConditionSensorDefinition(
    "lightcurver_accelerator_automation",
    target=ON_ACCELERATOR,
    run_tags=accelerator_run_tags(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=interval_seconds(AUTOMATION_INTERVAL_ENV_VAR),
    description=(
        "Materialises the accelerator assets (PSFs, fluxes, ROI model) whose automation conditions say "
        f"so, in runs tagged {DEVICE_TAG}={ACCELERATOR} for the run queue's limit (ships running)."
    ),
)
