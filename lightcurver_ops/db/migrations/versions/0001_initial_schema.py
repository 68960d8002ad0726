"""Initial schema: lightcurver 1.2.4 tables plus the raw-file registry and partition keys.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 01:58:44.325235
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_star_photometry",
        sa.Column("star_gaia_id", sa.String(length=32), nullable=False),
        sa.Column("catalog", sa.String(length=32), nullable=False),
        sa.Column("band", sa.String(length=32), nullable=False, comment="in the key, unlike lightcurver"),
        sa.Column("mag", sa.Float(), nullable=True),
        sa.Column("mag_err", sa.Float(), nullable=True),
        sa.Column("original_catalog_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("star_gaia_id", "catalog", "band"),
    )
    op.create_table(
        "combined_footprint",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hash", sa.BigInteger(), nullable=True),
        sa.Column("largest", sa.Text(), nullable=True),
        sa.Column("common", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hash"),
    )
    op.create_table(
        "frames",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("partition_key", sa.String(length=255), nullable=False),
        sa.Column("mjd", sa.Float(), nullable=True),
        sa.Column("exptime", sa.Float(), nullable=True, comment="s"),
        sa.Column("gain", sa.Float(), nullable=True, comment="e-/ADU"),
        sa.Column("filter", sa.Text(), nullable=True),
        sa.Column("original_image_path", sa.Text(), nullable=True, comment="absolute raw path"),
        sa.Column("raw_sha256", sa.String(length=64), nullable=True, comment="content hash of the raw file"),
        sa.Column("image_relpath", sa.Text(), nullable=True, comment="calibrated frame, relative to workdir"),
        sa.Column("sources_relpath", sa.Text(), nullable=True),
        sa.Column("telescope_latitude", sa.Float(), nullable=True),
        sa.Column("telescope_longitude", sa.Float(), nullable=True),
        sa.Column("telescope_elevation", sa.Float(), nullable=True),
        sa.Column("telescope_name", sa.Text(), nullable=True),
        sa.Column("telescope_imager_name", sa.Text(), nullable=True),
        sa.Column("plate_solved", sa.Integer(), server_default=sa.text("0"), nullable=True),
        sa.Column("attempted_plate_solve", sa.Integer(), server_default=sa.text("0"), nullable=True),
        sa.Column("pixel_scale", sa.Float(), nullable=True, comment="arcsec/pixel"),
        sa.Column("eliminated", sa.Integer(), server_default=sa.text("0"), nullable=True),
        sa.Column("airmass", sa.Float(), nullable=True),
        sa.Column("degrees_to_moon", sa.Float(), nullable=True),
        sa.Column("moon_phase", sa.Float(), nullable=True, comment="% illuminated"),
        sa.Column("sun_altitude", sa.Float(), nullable=True, comment="deg"),
        sa.Column("seeing_pixels", sa.Float(), nullable=True),
        sa.Column("seeing_arcseconds", sa.Float(), nullable=True),
        sa.Column("sky_level_electron_per_second", sa.Float(), nullable=True),
        sa.Column("background_rms_electron_per_second", sa.Float(), nullable=True),
        sa.Column("ellipticity", sa.Float(), nullable=True),
        sa.Column("n_sources", sa.Integer(), nullable=True),
        sa.Column("azimuth", sa.Float(), nullable=True, comment="deg, target"),
        sa.Column("altitude", sa.Float(), nullable=True, comment="deg, target"),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("roi_in_footprint", sa.Integer(), server_default=sa.text("0"), nullable=True),
        sa.Column("angle_to_north", sa.Float(), server_default=sa.text("(0.0)"), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_relpath"),
        sa.UniqueConstraint("partition_key"),
    )
    op.create_table(
        "raw_files",
        sa.Column(
            "partition_key", sa.String(length=255), nullable=False, comment="Dagster 'frames' partition key"
        ),
        sa.Column("path", sa.Text(), nullable=False, comment="absolute path of the raw FITS file"),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "mtime_ns", sa.BigInteger(), nullable=False, comment="modification time seen when registered"
        ),
        sa.Column(
            "registered_mjd", sa.Float(), nullable=False, comment="when the file was registered, MJD (UTC)"
        ),
        sa.PrimaryKeyConstraint("partition_key"),
        sa.UniqueConstraint("path"),
    )
    op.create_table(
        "stars",
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("ra", sa.Float(), nullable=True),
        sa.Column("dec", sa.Float(), nullable=True),
        sa.Column("gmag", sa.Float(), nullable=True),
        sa.Column("rmag", sa.Float(), nullable=True, comment="Gaia phot_rp_mean_mag"),
        sa.Column("bmag", sa.Float(), nullable=True, comment="Gaia phot_bp_mean_mag"),
        sa.Column("pmra", sa.Float(), nullable=True),
        sa.Column("pmdec", sa.Float(), nullable=True),
        sa.Column("ref_epoch", sa.Float(), nullable=True),
        sa.Column("gaia_id", sa.String(length=32), nullable=False),
        sa.Column("distance_to_roi_arcsec", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("combined_footprint_hash", "gaia_id"),
    )
    op.create_table(
        "PSFs",
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("chi2", sa.Float(), nullable=True),
        sa.Column("psf_ref", sa.String(length=255), nullable=False),
        sa.Column("subsampling_factor", sa.Integer(), nullable=True),
        sa.Column("relative_loss_differential", sa.Float(), nullable=True),
        sa.Column("fwhm_moffat_arcseconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frames.id"],
        ),
        sa.PrimaryKeyConstraint("combined_footprint_hash", "frame_id", "psf_ref"),
    )
    op.create_table(
        "absolute_zeropoints",
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.Column("zeropoint", sa.Float(), nullable=True),
        sa.Column("zeropoint_uncertainty", sa.Float(), nullable=True),
        sa.Column("source_catalog", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frames.id"],
        ),
        sa.PrimaryKeyConstraint("frame_id", "combined_footprint_hash"),
    )
    op.create_table(
        "footprints",
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("polygon", sa.Text(), nullable=False, comment="JSON list of 4 [ra, dec] corners, deg"),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frames.id"],
        ),
        sa.PrimaryKeyConstraint("frame_id"),
    )
    op.create_table(
        "normalization_coefficients",
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.Column("coefficient", sa.Float(), nullable=True),
        sa.Column("coefficient_uncertainty", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frames.id"],
        ),
        sa.PrimaryKeyConstraint("frame_id", "combined_footprint_hash"),
    )
    op.create_table(
        "star_flux_in_frame",
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("star_gaia_id", sa.String(length=32), nullable=False),
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.Column("flux", sa.Float(), nullable=True, comment="e-/s"),
        sa.Column("flux_uncertainty", sa.Float(), nullable=True, comment="e-/s"),
        sa.Column("chi2", sa.Float(), nullable=True),
        sa.Column("relative_loss_differential", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frames.id"],
        ),
        sa.PrimaryKeyConstraint("frame_id", "star_gaia_id", "combined_footprint_hash"),
    )
    op.create_table(
        "stars_in_frames",
        sa.Column("frame_id", sa.Integer(), nullable=False),
        sa.Column("star_gaia_id", sa.String(length=32), nullable=False),
        sa.Column("combined_footprint_hash", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["frame_id"],
            ["frames.id"],
        ),
        sa.PrimaryKeyConstraint("frame_id", "star_gaia_id", "combined_footprint_hash"),
    )


def downgrade() -> None:
    op.drop_table("stars_in_frames")
    op.drop_table("star_flux_in_frame")
    op.drop_table("normalization_coefficients")
    op.drop_table("footprints")
    op.drop_table("absolute_zeropoints")
    op.drop_table("PSFs")
    op.drop_table("stars")
    op.drop_table("raw_files")
    op.drop_table("frames")
    op.drop_table("combined_footprint")
    op.drop_table("catalog_star_photometry")
