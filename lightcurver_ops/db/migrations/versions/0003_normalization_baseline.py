"""The normalisation baseline (star_reference_fluxes) and the coefficients' scatter and star count.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "star_reference_fluxes",
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.Column("star_gaia_id", sa.String(length=32), nullable=False),
        sa.Column(
            "reference_flux",
            sa.Float(),
            nullable=True,
            comment="e-/s on the reference frame's scale; NULL if rejected",
        ),
        sa.Column("reference_flux_uncertainty", sa.Float(), nullable=True, comment="e-/s"),
        sa.Column(
            "reduced_chi2",
            sa.Float(),
            nullable=True,
            comment="scatter of the star's accepted fluxes about the bilinear model",
        ),
        sa.Column("n_frames", sa.Integer(), nullable=True, comment="accepted measurements"),
        sa.Column("n_clipped", sa.Integer(), nullable=True, comment="measurements rejected as outliers"),
        sa.Column("rejected", sa.Integer(), nullable=False, comment="1: left out of the normalisation"),
        sa.Column("reference_frame_id", sa.Integer(), nullable=True, comment="frame whose coefficient is 1"),
        sa.Column(
            "created_mjd", sa.Float(), nullable=False, comment="when the baseline was built, MJD (UTC)"
        ),
        sa.PrimaryKeyConstraint("combined_footprint_hash", "star_gaia_id"),
    )
    with op.batch_alter_table("normalization_coefficients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "reduced_chi2",
                sa.Float(),
                nullable=True,
                comment="scatter of the frame's star ratios (lightcurver-dagster)",
            )
        )
        batch_op.add_column(
            sa.Column(
                "n_stars", sa.Integer(), nullable=True, comment="stars in the mean (lightcurver-dagster)"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("normalization_coefficients", schema=None) as batch_op:
        batch_op.drop_column("n_stars")
        batch_op.drop_column("reduced_chi2")
    op.drop_table("star_reference_fluxes")
