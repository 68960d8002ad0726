"""What the ROI assets read of earlier stages: the frames that qualify and their files."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from lightcurver_dagster.defs.resources import WorkDirectory
from lightcurver_ops import paths
from lightcurver_ops.chi2_bounds import chi2_bounds
from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.cutouts import read_frame_cutouts
from lightcurver_ops.db.catalog_photometry import zeropoints_of_set
from lightcurver_ops.db.normalization import coefficients_of_set
from lightcurver_ops.db.psfs import psf_chi2_values
from lightcurver_ops.db.schema import frames, normalization_coefficients
from lightcurver_ops.frame_cutouts import ROI_STAMP
from lightcurver_ops.frame_psf import read_psf
from lightcurver_ops.frame_roi import RoiFrame, roi_rejection
from lightcurver_ops.roi_cube import check_constraints


@dataclass(frozen=True)
class RoiSelection:
    """The per-frame facts the ROI selection needs, loaded once per run."""

    coefficients: dict[int, dict[str, Any]]
    zeropoints: dict[int, dict[str, Any]]
    psf_chi2: dict[int, float]
    psf_bounds: tuple[float, float]
    frame_constraints: dict[str, tuple[float, float]]
    coefficient_constraints: dict[str, tuple[float, float]]

    @classmethod
    def load(cls, engine: Engine, config: LightcurverConfig, set_hash: int) -> "RoiSelection":
        """Read the star set's coefficients, zero points and PSF chi2; check the config's constraints
        against the columns they may name (a ``ConfigError`` names the key and the column)."""
        with engine.connect() as connection:
            coefficients = {row["frame_id"]: row for row in coefficients_of_set(connection, set_hash)}
            zeropoints = zeropoints_of_set(connection, set_hash)
            psf_chi2 = psf_chi2_values(connection, set_hash)
        return cls(
            coefficients=coefficients,
            zeropoints=zeropoints,
            psf_chi2=psf_chi2,
            psf_bounds=chi2_bounds(config.psf_fit_exclude_strategy, psf_chi2.values()),
            frame_constraints=check_constraints(
                "constraints_on_frame_columns_for_roi",
                config.constraints_on_frame_columns_for_roi,
                [column.name for column in frames.columns],
            ),
            coefficient_constraints=check_constraints(
                "constraints_on_normalization_coeff",
                config.constraints_on_normalization_coeff,
                [column.name for column in normalization_coefficients.columns],
            ),
        )

    def rejection(self, frame: dict[str, Any]) -> str | None:
        """Why the frame is not in the ROI products, or None."""
        return roi_rejection(
            frame,
            self.coefficients.get(frame["id"]),
            self.psf_chi2.get(frame["id"]),
            self.psf_bounds,
            self.frame_constraints,
            self.coefficient_constraints,
        )

    def read(self, workdir: Path, frame: dict[str, Any]) -> RoiFrame:
        """The frame's ROI cutout, PSF (at the ROI when it has a field distortion), coefficient and
        zero point."""
        key = frame["partition_key"]
        stamps, _, frame_shape = read_frame_cutouts(workdir / paths.cutouts_relpath(key), names=[ROI_STAMP])
        psf = read_psf(workdir / paths.psf_relpath(key))
        coefficient = self.coefficients[frame["id"]]
        return RoiFrame(
            frame=frame,
            stamp=stamps[ROI_STAMP],
            narrow_psf=psf.at(stamps[ROI_STAMP].position, frame_shape)[0],
            subsampling=psf.subsampling,
            coefficient=coefficient["coefficient"],
            coefficient_uncertainty=coefficient["coefficient_uncertainty"],
            zeropoint=self.zeropoints.get(frame["id"], {}).get("zeropoint", float("nan")),
        )


def roi_cube_path(config: LightcurverConfig, work_directory: WorkDirectory, set_hash: int) -> Path:
    """``prepared_roi_cutouts_path`` (relative to workdir, lightcurver crashed on a string path)
    or the default per star set and ROI."""
    if config.prepared_roi_cutouts_path is not None:
        return config.resolve(config.prepared_roi_cutouts_path)
    return work_directory.path(paths.roi_cube_relpath(set_hash, config.roi_name))
