"""SQLAlchemy Core schema of the science database.

Tables and columns follow lightcurver 1.2.4 (so its users' SQL keeps working); ``frames`` also
carries the Dagster partition key and what the import measured beyond lightcurver, and
``raw_files`` records which raw file each partition comes from, ``frame_wcs`` the solved WCS of
each frame and ``star_sets`` the selection parameters behind each reference-star set (whose content
hash is lightcurver's ``combined_footprint_hash``) and ``star_reference_fluxes`` the normalisation
baseline. Later stages add their tables through Alembic
migrations; this module always describes the head revision.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()


def _frame_id() -> Column:
    return Column("frame_id", Integer, ForeignKey("frames.id"), primary_key=True)


def _star_set_hash() -> Column:
    """The reference-star set a row belongs to (lightcurver's ``combined_footprint_hash``)."""
    return Column("combined_footprint_hash", BigInteger, primary_key=True)


def _star_id() -> Column:
    return Column("star_gaia_id", String(32), primary_key=True)


raw_files = Table(
    "raw_files",
    metadata,
    Column("partition_key", String(255), primary_key=True, comment="Dagster 'frames' partition key"),
    Column("path", Text, nullable=False, unique=True, comment="absolute path of the raw FITS file"),
    Column("size_bytes", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False, comment="modification time seen when registered"),
    Column("registered_mjd", Float, nullable=False, comment="when the file was registered, MJD (UTC)"),
)

frames = Table(
    "frames",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("partition_key", String(255), nullable=False, unique=True),
    Column("mjd", Float),
    Column("exptime", Float, comment="s"),
    Column("gain", Float, comment="e-/ADU"),
    Column("filter", Text),
    Column("original_image_path", Text, comment="absolute raw path"),
    Column("raw_sha256", String(64), comment="content hash of the raw file"),
    Column("image_relpath", Text, unique=True, comment="calibrated frame, relative to workdir"),
    Column("sources_relpath", Text),
    Column("telescope_latitude", Float),
    Column("telescope_longitude", Float),
    Column("telescope_elevation", Float),
    Column("telescope_name", Text),
    Column("telescope_imager_name", Text),
    Column("plate_solved", Integer, server_default=text("0")),
    Column("attempted_plate_solve", Integer, server_default=text("0")),
    Column("pixel_scale", Float, comment="arcsec/pixel"),
    Column("eliminated", Integer, server_default=text("0")),
    Column("airmass", Float),
    Column("degrees_to_moon", Float),
    Column("moon_phase", Float, comment="% illuminated"),
    Column("sun_altitude", Float, comment="deg"),
    Column("seeing_pixels", Float),
    Column("seeing_arcseconds", Float),
    Column("sky_level_electron_per_second", Float),
    Column("background_rms_electron_per_second", Float),
    Column("ellipticity", Float),
    Column("n_sources", Integer),
    Column("azimuth", Float, comment="deg, target"),
    Column("altitude", Float, comment="deg, target"),
    Column("comment", Text),
    Column(
        "eliminated_stage", String(64), comment="the asset that eliminated the frame (lightcurver-dagster)"
    ),
    Column("roi_in_footprint", Integer, server_default=text("0")),
    Column("angle_to_north", Float, server_default=text("0.0")),
)

footprints = Table(
    "footprints",
    metadata,
    _frame_id(),
    Column("polygon", Text, nullable=False, comment="JSON list of 4 [ra, dec] corners, deg"),
)

frame_wcs = Table(
    "frame_wcs",
    metadata,
    _frame_id(),
    Column("wcs_header", Text, nullable=False, comment="FITS header string of the frame's celestial WCS"),
    Column("strategy", String(64), nullable=False, comment="how the WCS was obtained"),
    Column("reference_frame_id", Integer, comment="frame the WCS was adapted from, if any"),
    Column("n_matches", Integer, comment="sources matched to the reference or catalogue"),
    Column("rms_pixels", Float, comment="rms of the matched residuals"),
)

combined_footprint = Table(
    "combined_footprint",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hash", BigInteger, unique=True),
    Column("largest", Text),
    Column("common", Text),
)

star_sets = Table(
    "star_sets",
    metadata,
    Column("hash", BigInteger, primary_key=True, comment="content hash of every selection parameter"),
    Column("parameters", Text, nullable=False, comment="JSON of the selection parameters"),
    Column("n_stars", Integer, nullable=False),
    Column("created_mjd", Float, nullable=False),
)

stars = Table(
    "stars",
    metadata,
    _star_set_hash(),
    Column("name", Text),
    Column("ra", Float),
    Column("dec", Float),
    Column("gmag", Float),
    Column("rmag", Float, comment="Gaia phot_rp_mean_mag"),
    Column("bmag", Float, comment="Gaia phot_bp_mean_mag"),
    Column("pmra", Float),
    Column("pmdec", Float),
    Column("ref_epoch", Float),
    Column("gaia_id", String(32), primary_key=True),
    Column("distance_to_roi_arcsec", Float),
)

catalog_star_photometry = Table(
    "catalog_star_photometry",
    metadata,
    _star_id(),
    Column("catalog", String(32), primary_key=True),
    Column("band", String(32), primary_key=True, comment="in the key, unlike lightcurver"),
    Column("mag", Float),
    Column("mag_err", Float),
    Column("original_catalog_id", Text),
)

stars_in_frames = Table(
    "stars_in_frames",
    metadata,
    _frame_id(),
    _star_id(),
    _star_set_hash(),
)

psfs = Table(
    "PSFs",
    metadata,
    _star_set_hash(),
    _frame_id(),
    Column("chi2", Float),
    Column("psf_ref", String(255), primary_key=True),
    Column("subsampling_factor", Integer),
    Column("relative_loss_differential", Float),
    Column("fwhm_moffat_arcseconds", Float),
)

star_flux_in_frame = Table(
    "star_flux_in_frame",
    metadata,
    _frame_id(),
    _star_id(),
    _star_set_hash(),
    Column("flux", Float, comment="e-/s"),
    Column("flux_uncertainty", Float, comment="e-/s"),
    Column("chi2", Float),
    Column("relative_loss_differential", Float),
)

star_reference_fluxes = Table(
    "star_reference_fluxes",
    metadata,
    _star_set_hash(),
    _star_id(),
    Column("reference_flux", Float, comment="e-/s on the reference frame's scale; NULL if rejected"),
    Column("reference_flux_uncertainty", Float, comment="e-/s"),
    Column("reduced_chi2", Float, comment="scatter of the star's accepted fluxes about the bilinear model"),
    Column("n_frames", Integer, comment="accepted measurements"),
    Column("n_clipped", Integer, comment="measurements rejected as outliers"),
    Column("rejected", Integer, nullable=False, comment="1: left out of the normalisation"),
    Column("reference_frame_id", Integer, comment="frame whose coefficient is 1"),
    Column("created_mjd", Float, nullable=False, comment="when the baseline was built, MJD (UTC)"),
)

normalization_coefficients = Table(
    "normalization_coefficients",
    metadata,
    _frame_id(),
    _star_set_hash(),
    Column("coefficient", Float),
    Column("coefficient_uncertainty", Float),
    Column("reduced_chi2", Float, comment="scatter of the frame's star ratios (lightcurver-dagster)"),
    Column("n_stars", Integer, comment="stars in the mean (lightcurver-dagster)"),
)

absolute_zeropoints = Table(
    "absolute_zeropoints",
    metadata,
    _frame_id(),
    _star_set_hash(),
    Column("zeropoint", Float),
    Column("zeropoint_uncertainty", Float),
    Column("source_catalog", Text),
)

roi_models = Table(
    "roi_models",
    metadata,
    _star_set_hash(),
    Column("roi_name", String(255), primary_key=True),
    Column("created_mjd", Float, nullable=False, comment="when the model was fitted, MJD (UTC)"),
    Column("n_frames", Integer, nullable=False),
    Column("reference_frame_id", Integer, comment="frame whose cutout defines the model's pixel grid"),
    Column("model_relpath", Text, nullable=False, comment="HDF5 of the model, relative to workdir"),
    Column("median_reduced_chi2", Float),
    Column("astrometry", Text, comment="JSON {label: [ra, dec]} of the point sources, deg"),
)

roi_fluxes = Table(
    "roi_fluxes",
    metadata,
    _frame_id(),
    _star_set_hash(),
    Column("roi_name", String(255), primary_key=True),
    Column("source", String(255), primary_key=True, comment="point-source label"),
    Column("flux", Float, comment="normalised e-/s"),
    Column("flux_uncertainty", Float, comment="Fisher and normalisation errors combined, normalised e-/s"),
    Column("fit_flux_uncertainty", Float, comment="Fisher error alone, normalised e-/s"),
)

roi_frame_fits = Table(
    "roi_frame_fits",
    metadata,
    _frame_id(),
    _star_set_hash(),
    Column("roi_name", String(255), primary_key=True),
    Column("reduced_chi2", Float),
    Column("dx", Float, comment="translation, pixels"),
    Column("dy", Float, comment="translation, pixels"),
    Column("sky", Float, comment="uniform sky, normalised e-/s per pixel"),
    Column("covariance", Text, comment="JSON matrix of the fluxes' covariance, (normalised e-/s)^2"),
    Column("model_created_mjd", Float, comment="the roi_models row the fit used"),
)
