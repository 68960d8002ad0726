"""sep (Source Extractor as a library) helpers: array preparation, limits, extraction errors."""

import numpy as np
import sep

_SEP_SUB_OBJECT_LIMIT = 8192


def sep_ready(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C-contiguous native float64 copy of ``image`` with NaN set to 0, and the NaN mask."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    nan_mask = ~np.isfinite(image)
    data = np.ascontiguousarray(np.where(nan_mask, 0.0, image), dtype=np.float64)
    return data, nan_mask


def raise_sep_limits(n_pixels: int) -> None:
    """Make sep's pixel stack and deblending object limit large enough for a crowded frame."""
    if sep.get_extract_pixstack() < n_pixels:
        sep.set_extract_pixstack(n_pixels)
    if sep.get_sub_object_limit() < _SEP_SUB_OBJECT_LIMIT:
        sep.set_sub_object_limit(_SEP_SUB_OBJECT_LIMIT)


def sep_extract(data: np.ndarray, **kwargs: object):
    raise_sep_limits(data.size)
    try:
        return sep.extract(data, **kwargs)
    except Exception as exc:  # sep raises bare Exception on overflows
        raise RuntimeError(f"sep source extraction failed: {exc}") from exc
