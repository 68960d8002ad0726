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
