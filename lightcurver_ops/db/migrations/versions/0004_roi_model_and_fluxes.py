"""The ROI model of each star set and ROI (roi_models) and the per-frame point-source fluxes
(roi_fluxes, roi_frame_fits).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _frame_and_set() -> list[sa.Column]:
    return [
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.Column("roi_name", sa.String(length=255), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "roi_models",
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.Column("roi_name", sa.String(length=255), nullable=False),
        sa.Column("created_mjd", sa.Float(), nullable=False, comment="when the model was fitted, MJD (UTC)"),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column(
            "reference_frame_id",
            sa.Integer(),
            nullable=True,
            comment="frame whose cutout defines the model's pixel grid",
        ),
        sa.Column(
            "model_relpath", sa.Text(), nullable=False, comment="HDF5 of the model, relative to workdir"
        ),
        sa.Column("median_reduced_chi2", sa.Float(), nullable=True),
        sa.Column(
            "astrometry",
            sa.Text(),
            nullable=True,
            comment="JSON {label: [ra, dec]} of the point sources, deg",
        ),
        sa.PrimaryKeyConstraint("combined_footprint_hash", "roi_name"),
    )
    op.create_table(
        "roi_fluxes",
        *_frame_and_set(),
        sa.Column("source", sa.String(length=255), nullable=False, comment="point-source label"),
        sa.Column("flux", sa.Float(), nullable=True, comment="normalised e-/s"),
        sa.Column(
            "flux_uncertainty",
            sa.Float(),
            nullable=True,
            comment="Fisher and normalisation errors combined, normalised e-/s",
        ),
        sa.Column(
            "fit_flux_uncertainty", sa.Float(), nullable=True, comment="Fisher error alone, normalised e-/s"
        ),
        sa.ForeignKeyConstraint(["frame_id"], ["frames.id"]),
        sa.PrimaryKeyConstraint("frame_id", "combined_footprint_hash", "roi_name", "source"),
    )
    op.create_table(
        "roi_frame_fits",
        *_frame_and_set(),
        sa.Column("reduced_chi2", sa.Float(), nullable=True),
        sa.Column("dx", sa.Float(), nullable=True, comment="translation, pixels"),
        sa.Column("dy", sa.Float(), nullable=True, comment="translation, pixels"),
        sa.Column("sky", sa.Float(), nullable=True, comment="uniform sky, normalised e-/s per pixel"),
        sa.Column(
            "covariance",
            sa.Text(),
            nullable=True,
            comment="JSON matrix of the fluxes' covariance, (normalised e-/s)^2",
        ),
        sa.Column("model_created_mjd", sa.Float(), nullable=True, comment="the roi_models row the fit used"),
        sa.ForeignKeyConstraint(["frame_id"], ["frames.id"]),
        sa.PrimaryKeyConstraint("frame_id", "combined_footprint_hash", "roi_name"),
    )


def downgrade() -> None:
    op.drop_table("roi_frame_fits")
    op.drop_table("roi_fluxes")
    op.drop_table("roi_models")
