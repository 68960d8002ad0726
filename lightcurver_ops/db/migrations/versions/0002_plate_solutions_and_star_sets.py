"""Solved WCS per frame (frame_wcs), the parameters of each reference-star set (star_sets),
and the stage that eliminated a frame (frames.eliminated_stage).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:33:39.542125
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "star_sets",
        sa.Column(
            "hash", sa.BigInteger(), nullable=False, comment="content hash of every selection parameter"
        ),
        sa.Column("parameters", sa.Text(), nullable=False, comment="JSON of the selection parameters"),
        sa.Column("n_stars", sa.Integer(), nullable=False),
        sa.Column("created_mjd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_table(
        "frame_wcs",
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column(
            "wcs_header", sa.Text(), nullable=False, comment="FITS header string of the frame's celestial WCS"
        ),
        sa.Column("strategy", sa.String(length=64), nullable=False, comment="how the WCS was obtained"),
        sa.Column(
            "reference_frame_id",
            sa.Integer(),
            nullable=True,
            comment="frame the WCS was adapted from, if any",
        ),
        sa.Column(
            "n_matches", sa.Integer(), nullable=True, comment="sources matched to the reference or catalogue"
        ),
        sa.Column("rms_pixels", sa.Float(), nullable=True, comment="rms of the matched residuals"),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frames.id"],
        ),
        sa.PrimaryKeyConstraint("frame_id"),
    )
    with op.batch_alter_table("frames", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "eliminated_stage",
                sa.String(length=64),
                nullable=True,
                comment="the asset that eliminated the frame (lightcurver-dagster)",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("frames", schema=None) as batch_op:
        batch_op.drop_column("eliminated_stage")

    op.drop_table("frame_wcs")
    op.drop_table("star_sets")
