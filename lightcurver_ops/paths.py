"""Where each product lives in the work directory (relative paths, as stored in the database)."""

FRAMES_DIR = "frames"
PLOTS_DIR = "plots"


def calibrated_frame_relpath(partition_key: str) -> str:
    """Calibrated, sky-subtracted frame in e-/s."""
    return f"{FRAMES_DIR}/{partition_key}.fits"


def sources_relpath(partition_key: str) -> str:
    """Source catalogue of the calibrated frame."""
    return f"{FRAMES_DIR}/{partition_key}_sources.fits"


def source_plot_relpath(partition_key: str) -> str:
    """Diagnostic plot of the detected sources."""
    return f"{PLOTS_DIR}/source_extraction/{partition_key}.jpg"


def cutouts_relpath(partition_key: str) -> str:
    """HDF5 file of a frame's stamps (stars and ROI)."""
    return f"cutouts/{partition_key}.h5"


FOOTPRINTS_PLOT = f"{PLOTS_DIR}/footprints.png"
STARS_PLOT = f"{PLOTS_DIR}/footprints_with_stars.png"
REGIONS_EXPORT = "regions.h5"
"""All stamps in lightcurver's ``regions.h5`` layout, for notebooks."""


def psf_relpath(partition_key: str) -> str:
    """HDF5 file of a frame's PSF model."""
    return f"psfs/{partition_key}.h5"


def psf_plot_relpath(partition_key: str) -> str:
    """Diagnostic plot of a frame's PSF fit."""
    return f"{PLOTS_DIR}/psfs/{partition_key}.png"


JAX_CACHE_DIR = ".jax_cache"
"""JAX persistent compilation cache, shared by every run on this work directory."""
NORMALIZATION_PLOT = f"{PLOTS_DIR}/normalization.png"
"""Coefficients over time and one reference star before and after normalisation."""


def roi_cube_relpath(set_hash: int, roi_name: str) -> str:
    """lightcurver's default prepared ROI file (``prepared_roi_cutouts_path`` overrides it)."""
    return f"prepared_roi_cutouts/cutouts_{set_hash}_{roi_name}.h5"


def roi_model_relpath(set_hash: int, roi_name: str) -> str:
    """HDF5 of the joint ROI model (background, positions, reference cutout) read by roi_fluxes."""
    return f"roi_model/{set_hash}_{roi_name}_model.h5"


def roi_model_prefix(set_hash: int, roi_name: str) -> str:
    """Prefix of the ROI model's FITS, JSON and plots (lightcurver's ``<hash>_<roi>``)."""
    return f"roi_model/{set_hash}_{roi_name}"


LIGHT_CURVES_DIR = "light_curves"
"""Light-curve products: ``<roi>_photometry_per_epoch.csv``, per night, astrometry, FITS, plots."""
