"""Sky background of an image: sep's mesh, or a low-order polynomial fitted to the source-free pixels."""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import sep
from astropy.stats import sigma_clip, sigma_clipped_stats
from numpy.polynomial import polynomial

from lightcurver_ops._sep import sep_extract, sep_ready


@dataclass(frozen=True)
class Background:
    """Sky background of an image, from sep.

    Attributes
    ----------
    sky : ndarray, shape (ny, nx), float64
        Smooth sky map, in the image's units (e-/s).
    level : float
        Global sky level (sep ``globalback``), e-/s.
    rms : float
        Global sky noise (sep ``globalrms``), e-/s.
    """

    sky: np.ndarray
    level: float
    rms: float


def _even_box(side: int, box: int) -> int:
    """Box size close to ``box`` that tiles ``side`` pixels in equal boxes (the last one at most 1 smaller).

    sep's last box along an axis is whatever is left over; ``min(ny, nx) // n_boxes`` usually leaves
    a strip of a few pixels whose noisy estimate then enters the median that makes ``globalback``,
    biasing it by about 1% on a sky gradient of a few percent.
    """
    n = max(1, round(side / box))
    return -(-side // n)


BackgroundModel = Literal["mesh", "polynomial"]
BACKGROUND_MODELS: tuple[BackgroundModel, ...] = ("mesh", "polynomial")
MAX_POLYNOMIAL_DEGREE = 5
_POLYNOMIAL_CLIP_PASSES = 5


def estimate_background(
    image: np.ndarray,
    n_boxes: int = 3,
    mask_sources: bool = False,
    filter_size: int = 3,
    model: BackgroundModel = "mesh",
    polynomial_degree: int = 2,
) -> Background:
    """Estimate the sky with sep's mesh background, or a polynomial fitted to the source-free pixels.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Unsubtracted image, e-/s. NaN pixels are masked.
    n_boxes : int
        Number of background boxes along the shorter axis: box size ``min(ny, nx) // n_boxes`` pixels.
    mask_sources : bool
        If true, sources found at 2 sigma (minimum area 10 pixels) on a first sky-subtracted image are
        masked (their segments and ellipses of 5 times their moment radii) and the background is
        measured again.
    filter_size : int
        Median filter size over boxes (sep ``fw``, ``fh``).
    model : {"mesh", "polynomial"}
        ``"mesh"``: sep's mesh background, as lightcurver. ``"polynomial"``: a 2-D polynomial of
        ``polynomial_degree`` fitted by least squares, with 3-sigma clipping, to the pixels outside the
        sources (always masked, as with ``mask_sources``; the mesh only serves to find them). A mesh
        of a few boxes interpolates a smooth sky with errors of ~1e-4 of the sky at the stars, enough
        to shift a PSF model's normalisation by a few mmag from frame to frame; the polynomial's
        errors there are 3-10 times smaller on smooth skies (measured on the simulator's frames).
    polynomial_degree : int
        Degree of the polynomial (``model="polynomial"``), 0 to 5.

    Returns
    -------
    Background
        Sky map, global level and pixel noise (sigma-clipped rms of the image minus the sky map),
        e-/s. The mesh's level is sep's ``globalback``; its box size is adjusted by a few pixels so
        that equal boxes tile each axis (see :func:`_even_box`), and on a linear sky gradient the
        level is then the mean sky. The polynomial's level is the mean of its map.

    Raises
    ------
    ValueError
        If the image is not 2-D, or n_boxes or filter_size is not a positive integer, or the boxes
        would be empty, or model or polynomial_degree is not one of the values above.
    RuntimeError
        If sep fails.
    """
    for name, value in [("n_boxes", n_boxes), ("filter_size", filter_size)]:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if model not in BACKGROUND_MODELS:
        raise ValueError(f"model must be one of {BACKGROUND_MODELS}, got {model!r}")
    if (
        isinstance(polynomial_degree, bool)
        or not isinstance(polynomial_degree, int | np.integer)
        or not 0 <= polynomial_degree <= MAX_POLYNOMIAL_DEGREE
    ):
        raise ValueError(
            f"polynomial_degree must be an integer from 0 to {MAX_POLYNOMIAL_DEGREE}, "
            f"got {polynomial_degree!r}"
        )
    data, nan_mask = sep_ready(image)
    box = min(data.shape) // n_boxes
    if box < 1:
        raise ValueError(f"n_boxes={n_boxes} is larger than the image's shorter side {min(data.shape)}")
    box_height, box_width = (_even_box(side, box) for side in data.shape)

    def background(mask: np.ndarray) -> sep.Background:
        try:
            return sep.Background(
                data, mask=mask, bw=box_width, bh=box_height, fw=filter_size, fh=filter_size
            )
        except Exception as exc:  # sep raises bare Exception
            raise RuntimeError(f"sep background estimation failed: {exc}") from exc

    bkg = background(nan_mask)
    if model == "polynomial":
        sky = _polynomial_sky(data, nan_mask | _source_mask(data, bkg, nan_mask), polynomial_degree)
        return Background(
            sky=sky, level=float(sky[~nan_mask].mean()), rms=_residual_rms(data - sky, nan_mask)
        )
    if mask_sources:
        bkg = background(nan_mask | _source_mask(data, bkg, nan_mask))
    sky = bkg.back()
    return Background(sky=sky, level=float(bkg.globalback), rms=_residual_rms(data - sky, nan_mask))


def _source_mask(data: np.ndarray, bkg: sep.Background, nan_mask: np.ndarray) -> np.ndarray:
    """Pixels of the sources found at 2 sigma (minimum area 10 pixels) on ``data`` minus ``bkg``.

    The 2-sigma segments miss the PSF wings, which bias the sky high: ellipses of 5 times each
    source's moment radii are masked too.
    """
    objects, segmentation = sep_extract(
        data - bkg.back(),
        thresh=2.0,
        var=bkg.globalrms**2,
        mask=nan_mask,
        minarea=10,
        segmentation_map=True,
    )
    source_mask = segmentation > 0
    sep.mask_ellipse(
        source_mask, objects["x"], objects["y"], objects["a"], objects["b"], objects["theta"], r=5.0
    )
    return source_mask


def _polynomial_sky(
    data: np.ndarray, mask: np.ndarray, degree: int, max_samples: int = 250_000
) -> np.ndarray:
    """2-D polynomial of ``degree`` fitted to the unmasked pixels of ``data`` with 3-sigma clipping (e-/s).

    Linear least squares (``numpy.linalg.lstsq``) on the terms ``x^i y^j``, ``i + j <= degree``,
    refitted after clipping the residuals at 3 sigma (astropy's ``sigma_clip``) until the clipped
    set stops changing, at most 5 fits. Coordinates are scaled to [-1, 1] across the image so that
    the fit is well conditioned; a regular subsample of at most ``max_samples`` unmasked pixels
    enters the fit.

    Raises
    ------
    RuntimeError
        If fewer unmasked pixels remain than the polynomial has coefficients.
    """
    ny, nx = data.shape
    y, x = np.nonzero(~mask)
    n_terms = (degree + 1) * (degree + 2) // 2
    if x.size < 10 * n_terms:
        raise RuntimeError(
            f"polynomial background: {x.size} source-free pixels, too few for {n_terms} coefficients"
        )
    step = max(1, x.size // max_samples)
    x, y = x[::step], y[::step]

    def scaled(index: np.ndarray, side: int) -> np.ndarray:
        return 2.0 * index / max(side - 1, 1) - 1.0

    # Terms x^i y^j with i + j <= degree: a triangle of the (degree + 1)^2 coefficient grid. The
    # design matrix is built once for every clipping pass (astropy's fitter rebuilt it each pass:
    # two thirds of the fit's time on a 2k frame).
    terms = np.add.outer(np.arange(degree + 1), np.arange(degree + 1)) <= degree
    design = polynomial.polyvander2d(scaled(x, nx), scaled(y, ny), [degree, degree])[:, terms.ravel()]
    values = data[y, x]
    kept = np.ones(values.size, dtype=bool)
    for _ in range(_POLYNOMIAL_CLIP_PASSES):
        coefficients = np.linalg.lstsq(design[kept], values[kept], rcond=None)[0]
        clipped = ~np.ma.getmaskarray(sigma_clip(values - design @ coefficients, sigma=3.0))
        if np.array_equal(clipped, kept):
            break
        kept = clipped
    grid = np.zeros(terms.shape)
    grid[terms] = coefficients
    # sky[y, x] = sum grid[i, j] x^i y^j, as one matrix product of the axes' Vandermonde matrices
    vander_y = polynomial.polyvander(scaled(np.arange(ny), ny), degree)
    vander_x = polynomial.polyvander(scaled(np.arange(nx), nx), degree)
    return vander_y @ grid.T @ vander_x.T


def _residual_rms(residual: np.ndarray, nan_mask: np.ndarray, max_samples: int = 250_000) -> float:
    """Pixel noise of a sky-subtracted image: sigma-clipped standard deviation, e-/s.

    sep's ``globalrms`` is the median of per-box rms values, which include the sky gradient across a
    box (10-20 % too high with lightcurver's 3 boxes); the residual after the smooth sky map is
    removed is the noise itself. A regular subsample of at most ``max_samples`` pixels is used.
    """
    values = residual[~nan_mask]
    values = values[:: max(1, values.size // max_samples)]
    _, _, std = sigma_clipped_stats(values, sigma=3.0, maxiters=10)
    return float(std)
