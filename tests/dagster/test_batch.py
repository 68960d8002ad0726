"""The per-frame loop's report: every frame's own numbers reach its materialisation."""

import dagster as dg
import numpy as np

from lightcurver_dagster.defs.per_frame.batch import FrameOutcome, _summary_table


def test_the_run_table_holds_each_frames_numbers():
    outcomes = [
        FrameOutcome(
            "frame_1",
            False,
            metadata={
                "reduced_chi2": np.float64(1.02),
                "n_stars": 6,
                "converged": np.bool_(True),
                "plot": dg.MetadataValue.path("plots/psfs/frame_1.png"),
            },
        ),
        FrameOutcome("frame_2", True, "no PSF: 2 stars", metadata={"reduced_chi2": None}),
    ]
    table = _summary_table(outcomes)
    assert [(c.name, c.type) for c in table.schema.columns] == [
        ("frame", "string"),
        ("eliminated", "bool"),
        ("comment", "string"),
        ("reduced_chi2", "float"),
        ("n_stars", "int"),
        ("converged", "bool"),
    ]
    first, second = (record.data for record in table.records)
    assert first["reduced_chi2"] == 1.02 and first["n_stars"] == 6 and first["converged"] is True
    assert second == {
        "frame": "frame_2",
        "eliminated": True,
        "comment": "no PSF: 2 stars",
        "reduced_chi2": None,
        "n_stars": None,
        "converged": None,
    }
