"""Solved WCS per frame (frame_wcs) and the parameters of each reference-star set (star_sets).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:31:16.485655
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


def downgrade() -> None:
    op.drop_table("frame_wcs")
    op.drop_table("star_sets")
