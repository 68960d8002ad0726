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
