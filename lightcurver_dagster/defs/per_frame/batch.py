"""The loop every per-frame asset runs over ``context.partition_keys`` (one frame or a range).

A science rejection is an outcome (the frame materialises, marked eliminated). An unexpected
exception in one frame does not stop the others: they are stored and reported materialised, and
the step then fails naming the frames that raised.
"""

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np


@dataclass(frozen=True)
class FrameOutcome:
    """What one frame of a per-frame asset produced: status and numbers for the UI."""

    partition_key: str
    eliminated: bool
    comment: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def ui_metadata(self) -> dict[str, Any]:
        """Metadata without empty values, plus the status fields."""
        values = {key: value for key, value in self.metadata.items() if value is not None}
        values["eliminated"] = self.eliminated
        if self.comment:
            values["comment"] = self.comment
        return values


_COLUMN_TYPES = ((bool, "bool"), (int, "int"), (float, "float"), (str, "string"))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value."""
    return value.item() if isinstance(value, np.generic) else value


def _column_type(value: Any) -> str | None:
    """The table column type of a plain metadata value; None for paths, tables and the like."""
    return next((name for kind, name in _COLUMN_TYPES if isinstance(_plain(value), kind)), None)


def _summary_table(outcomes: list[FrameOutcome]) -> dg.TableMetadataValue:
    """One row per frame of the run: status, and every plain number or text of its metadata
    (e.g. a PSF's reduced chi2 and FWHM), so that each frame's materialisation shows them all."""
    columns = {"frame": "string", "eliminated": "bool", "comment": "string"}
    for outcome in outcomes:
        for key, value in outcome.metadata.items():
            kind = _column_type(value)
            if kind is not None:
                columns.setdefault(key, kind)
    records = []
    for o in outcomes:
        values = {"frame": o.partition_key, "eliminated": o.eliminated, "comment": o.comment or ""}
        for key in list(columns)[3:]:
            value = _plain(o.metadata.get(key))
            values[key] = value if _column_type(value) == columns[key] else None
        records.append(dg.TableRecord(values))
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()])
    return dg.MetadataValue.table(records=records, schema=schema)


def materialize_frames(
    context: dg.AssetExecutionContext, process: Callable[[str], FrameOutcome]
) -> dg.MaterializeResult:
    """Run ``process`` on every frame of the run and report the outcomes to Dagster.

    Raises
    ------
    dagster.Failure
        After all frames were attempted, if any raised; the frames that succeeded are reported
        materialised first.
    """
    keys = list(context.partition_keys)
    outcomes: list[FrameOutcome] = []
    failures: dict[str, str] = {}
    for index, key in enumerate(keys, start=1):
        try:
            outcome = process(key)
        except Exception as exc:
            failures[key] = f"{type(exc).__name__}: {exc}"
            context.log.error(f"frame {key} failed:\n{traceback.format_exc()}")
            continue
        outcomes.append(outcome)
        status = f"eliminated ({outcome.comment})" if outcome.eliminated else "ok"
        context.log.info(f"[{index}/{len(keys)}] {context.asset_key.to_user_string()} {key}: {status}")
        if len(keys) > 1:
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key, partition=key, metadata=outcome.ui_metadata()
                )
            )
    if failures:
        for outcome in outcomes:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=context.asset_key,
                    partition=outcome.partition_key,
                    metadata=outcome.ui_metadata(),
                )
            )
        listing = "; ".join(f"{key}: {reason}" for key, reason in failures.items())
        raise dg.Failure(f"{len(failures)} of {len(keys)} frames failed: {listing}")
    metadata: dict[str, Any] = {
        "n_frames": len(outcomes),
        "n_eliminated": sum(o.eliminated for o in outcomes),
    }
    if len(outcomes) == 1:
        metadata |= outcomes[0].ui_metadata()
    else:
        metadata["frames"] = _summary_table(outcomes)
    return dg.MaterializeResult(metadata=metadata)
