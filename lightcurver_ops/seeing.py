"""Seeing of a frame: pixel-integrated elliptical Moffat fits of bright isolated stars, combined
with the COSMOULINE histogram method (lightcurver took sep's moment FWHM, biased high for Moffat
profiles)."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from lightcurver_ops._checks import check_positive

_MOFFAT_SUBSAMPLING = 3


_SEEING_MIN_PEAK_SNR = 30.0


# Radius, in sep FWHMs, of the disc masked around each neighbour in a seeing stamp; a neighbour
# closer than twice this radius disqualifies the star.
_NEIGHBOUR_MASK_RADIUS = 1.5


_MIN_FIT_FWHM_PIXELS = 0.5


@dataclass(frozen=True)
class SeeingEstimate:
    """Seeing of a frame from Moffat fits of its stars.

    Attributes
    ----------
    fwhm_pixels : float
        Effective circular FWHM ``sqrt(FWHM_major * FWHM_minor)`` in pixels, combined over stars with
        :func:`seeing_histogram_mode`; NaN when no star could be fitted.
    ellipticity : float
        Median of ``1 - FWHM_minor / FWHM_major`` over the fitted stars; NaN when none.
    n_stars : int
        Number of stars with an accepted fit.
    """

    fwhm_pixels: float
    ellipticity: float
    n_stars: int


def seeing_histogram_mode(fwhm_values: np.ndarray | Sequence[float]) -> float:
    """Combine per-source FWHMs into one seeing value (COSMOULINE / Tewes histogram method).

    Non-finite values are ignored. With more than 10 values: ``med = max(median, 1.5)``,
    ``max_fwhm = min(30, 3 med)``; a 10-bin histogram over [1.5, max_fwhm]; if its peak is in the
    first or last bin the median is returned; otherwise a second 10-bin histogram over
    [peak - 2, peak + 2] around the peak bin's centre gives ``p2`` (its peak bin's centre), and the
    result is the median of the values in (p2 - 1, p2 + 1), or ``p2`` if there are none.
    With 1 to 10 values: their median. With none: NaN.

    Parameters
    ----------
    fwhm_values : array_like, shape (n,)
        FWHMs, pixels.

    Returns
    -------
    float
        Seeing, pixels.
    """
    values = np.asarray(fwhm_values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan
    median = float(np.median(values))
    if values.size <= 10:
        return median
    max_fwhm = min(30.0, 3 * max(median, 1.5))
    counts, edges = np.histogram(values, bins=10, range=(1.5, max_fwhm))
    peak_bin = int(np.argmax(counts))
    if peak_bin in (0, len(counts) - 1):
        return median
    peak = 0.5 * (edges[peak_bin] + edges[peak_bin + 1])
    counts, edges = np.histogram(values, bins=10, range=(peak - 2, peak + 2))
    peak_bin = int(np.argmax(counts))
    p2 = 0.5 * (edges[peak_bin] + edges[peak_bin + 1])
    near = values[(values > p2 - 1) & (values < p2 + 1)]
    return float(np.median(near)) if near.size else float(p2)


def measure_seeing(
    image_sub: np.ndarray,
    sources: Table,
    rms: float,
    saturation: float | None = None,
    max_stars: int = 25,
) -> SeeingEstimate:
    """Measure the seeing by fitting elliptical Moffat profiles to bright isolated stars.

    Stars are sources with sep ``flag == 0``, peak S/N (``peak / rms``) above 30, whose square stamp
    lies inside the image without NaN and with a maximum below ``saturation``. The stamp half-width
    is 2.5 times the median sep FWHM of the candidates (clipped to 5-20 pixels). Neighbours brighter
    than 1% of the star are masked in the stamp by discs of 1.5 sep FWHMs; a star with such a
    neighbour closer than 3 sep FWHMs is not used. The ``max_stars`` brightest are each fitted with
    an elliptical Moffat plus a constant, integrated over pixels (3x3 sub-pixel grid), by least
    squares. Failed fits, FWHMs below 0.5 pixel or above the stamp half-width, and centres more than
    2 pixels from sep's are rejected. The per-star effective FWHMs
    ``sqrt(FWHM_major FWHM_minor)`` are combined with :func:`seeing_histogram_mode`.

    Parameters
    ----------
    image_sub : ndarray, shape (ny, nx)
        Sky-subtracted image, e-/s.
    sources : astropy.table.Table
        Output of :func:`extract_sources` (needs ``x``, ``y``, ``flux``, ``peak``, ``flag``, ``FWHM``).
    rms : float
        Sky noise, e-/s.
    saturation : float or None
        Saturation level in the units and zero point of ``image_sub`` (e-/s above the sky); stars
        whose stamp reaches it are skipped. None: no saturation cut.
    max_stars : int
        Maximum number of stars fitted.

    Returns
    -------
    SeeingEstimate
        NaN FWHM and ellipticity with ``n_stars = 0`` when no star could be fitted.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    check_positive("rms", rms)
    if saturation is not None:
        check_positive("saturation", saturation)
    if isinstance(max_stars, bool) or not isinstance(max_stars, int | np.integer) or max_stars < 1:
        raise ValueError(f"max_stars must be a positive integer, got {max_stars!r}")
    image = np.asarray(image_sub, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image_sub must be 2-D, got shape {image.shape}")
    nothing = SeeingEstimate(fwhm_pixels=math.nan, ellipticity=math.nan, n_stars=0)
    if len(sources) == 0:
        return nothing

    x = np.asarray(sources["x"], dtype=np.float64)
    y = np.asarray(sources["y"], dtype=np.float64)
    flux = np.asarray(sources["flux"], dtype=np.float64)
    candidates = (np.asarray(sources["flag"]) == 0) & (
        np.asarray(sources["peak"]) / rms > _SEEING_MIN_PEAK_SNR
    )
    if not candidates.any():
        return nothing
    fwhm_guess = float(np.median(np.asarray(sources["FWHM"])[candidates]))
    half = int(np.clip(math.ceil(2.5 * fwhm_guess), 5, 20))

    ny, nx = image.shape
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    candidates &= (ix - half >= 0) & (ix + half < nx) & (iy - half >= 0) & (iy + half < ny)
    tree = cKDTree(np.column_stack([x, y]))
    mask_radius = _NEIGHBOUR_MASK_RADIUS * fwhm_guess
    fitter = _MoffatFitter(half)
    stamp_y, stamp_x = np.mgrid[-half : half + 1, -half : half + 1]
    fwhms: list[float] = []
    ellipticities: list[float] = []
    n_tried = 0
    for i in np.flatnonzero(candidates)[np.argsort(-flux[candidates], kind="stable")]:
        neighbours = [
            j
            for j in tree.query_ball_point([x[i], y[i]], r=half * math.sqrt(2) + mask_radius)
            if j != i and flux[j] > 0.01 * flux[i]
        ]
        if any(math.hypot(x[j] - x[i], y[j] - y[i]) < 2 * mask_radius for j in neighbours):
            continue
        stamp = image[iy[i] - half : iy[i] + half + 1, ix[i] - half : ix[i] + half + 1]
        if not np.isfinite(stamp).all() or (saturation is not None and stamp.max() >= saturation):
            continue
        weights = np.full(stamp.shape, 1 / rms)
        for j in neighbours:
            weights[np.hypot(stamp_x - (x[j] - ix[i]), stamp_y - (y[j] - iy[i])) < mask_radius] = 0.0
        n_tried += 1
        fit = fitter.fit(stamp, weights, x[i] - (ix[i] - half), y[i] - (iy[i] - half), fwhm_guess)
        if fit is not None:
            fwhms.append(fit[0])
            ellipticities.append(fit[1])
        if n_tried >= max_stars:
            break
    if not fwhms:
        return nothing
    return SeeingEstimate(
        fwhm_pixels=seeing_histogram_mode(fwhms),
        ellipticity=float(np.median(ellipticities)),
        n_stars=len(fwhms),
    )


class _MoffatFitter:
    """Least-squares fit of a pixel-integrated elliptical Moffat plus constant on square stamps.

    Model: ``A (1 + q)^(-beta) + c`` with ``q = (l11 dx + l21 dy)^2 + (l22 dy)^2``, where ``l11, l22 > 0``
    and ``l21`` form a Cholesky factor of the inverse shape matrix, so every parameter set is a valid
    ellipse and a round star has no degenerate position angle. The fitted parameters are unconstrained
    (``log A, x0, y0, log l11, l21, log l22, log(beta - 1), c``), which allows MINPACK's
    Levenberg-Marquardt (a bounded trust-region fit is several times slower on these small problems).
    """

    def __init__(self, half: int) -> None:
        self.half = half
        self.size = 2 * half + 1
        n_sub = _MOFFAT_SUBSAMPLING
        offsets = (np.arange(n_sub) - (n_sub - 1) / 2) / n_sub
        pix = np.arange(self.size, dtype=np.float64)
        # Sub-pixel coordinates with shape (size, n_sub, size, n_sub): y, sub-y, x, sub-x.
        grid_shape = (self.size, n_sub, self.size, n_sub)
        self.xs = np.broadcast_to(pix[None, None, :, None] + offsets[None, None, None, :], grid_shape)
        self.ys = np.broadcast_to(pix[:, None, None, None] + offsets[None, :, None, None], grid_shape)
        # Averaging over each pixel's sub-pixels as two small matrix products (BLAS), four times
        # faster than a mean over the non-contiguous sub-pixel axes.
        self._binning = np.kron(np.eye(self.size), np.full((1, n_sub), 1.0 / n_sub))
        self._cached_key: bytes | None = None
        self._cached_terms: tuple[np.ndarray, ...] = ()

    def _block_mean(self, values: np.ndarray) -> np.ndarray:
        """Pixel means of sub-pixel values of shape (size, n_sub, size, n_sub), raveled."""
        side = self._binning.shape[1]
        return (self._binning @ values.reshape(side, side) @ self._binning.T).ravel()

    def _terms(self, p: np.ndarray) -> tuple[np.ndarray, ...]:
        """Model terms at ``p``; MINPACK asks for residuals and Jacobian at the same point, so the
        last evaluation is kept."""
        key = p.tobytes()
        if key != self._cached_key:
            self._cached_key, self._cached_terms = key, self._evaluate(p)
        return self._cached_terms

    def _evaluate(self, p: np.ndarray) -> tuple[np.ndarray, ...]:
        log_amplitude, x0, y0, log_l11, l21, log_l22, log_beta_1, _ = p
        l11, l22, beta = math.exp(log_l11), math.exp(log_l22), 1.0 + math.exp(log_beta_1)
        dx, dy = self.xs - x0, self.ys - y0
        u, v = l11 * dx + l21 * dy, l22 * dy
        one_q = 1.0 + u * u + v * v
        profile = math.exp(log_amplitude) * one_q ** (-beta)
        return dx, dy, u, v, one_q, profile

    def _residuals(self, p: np.ndarray, stamp: np.ndarray, weight: np.ndarray) -> np.ndarray:
        *_, profile = self._terms(p)
        return (self._block_mean(profile) + p[7] - stamp) * weight

    def _jacobian(self, p: np.ndarray, stamp: np.ndarray, weight: np.ndarray) -> np.ndarray:
        _, _, _, log_l11, l21, log_l22, log_beta_1, _ = p
        l11, l22, beta = math.exp(log_l11), math.exp(log_l22), 1.0 + math.exp(log_beta_1)
        dx, dy, u, v, one_q, profile = self._terms(p)
        d_q = -beta * profile / one_q  # d model / d q
        columns = [
            profile,
            d_q * (-2 * u * l11),
            d_q * (-2 * (u * l21 + v * l22)),
            d_q * (2 * u * dx) * l11,
            d_q * (2 * u * dy),
            d_q * (2 * v * dy) * l22,
            -profile * np.log(one_q) * (beta - 1),
        ]
        jac = np.ones((self.size * self.size, 8))
        for k, column in enumerate(columns):
            jac[:, k] = self._block_mean(column)
        return jac * weight[:, None]

    def fit(
        self, stamp: np.ndarray, weights: np.ndarray, x0: float, y0: float, fwhm_guess: float
    ) -> tuple[float, float] | None:
        """Fit one stamp; return (effective FWHM in pixels, ellipticity) or None for a rejected fit.

        ``stamp`` and ``weights`` (1/noise, 0 for masked pixels) have shape (size, size), the stamp a
        positive maximum; ``x0, y0`` are the first guess of the centre in stamp pixels; ``fwhm_guess``
        is in pixels.
        """
        beta0 = 3.0
        log_l0 = -math.log(max(fwhm_guess, 1.0) / (2 * math.sqrt(2 ** (1 / beta0) - 1)))
        p0 = np.array([math.log(stamp.max()), x0, y0, log_l0, 0.0, log_l0, math.log(beta0 - 1), 0.0])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            try:
                result = least_squares(
                    self._residuals,
                    p0,
                    jac=self._jacobian,
                    method="lm",
                    x_scale="jac",
                    args=(stamp.ravel(), weights.ravel()),
                    max_nfev=200,
                )
            except (ValueError, OverflowError, np.linalg.LinAlgError):
                return None
        if not result.success or not np.all(np.isfinite(result.x)):
            return None
        _, xf, yf, log_l11, l21, log_l22, log_beta_1, _ = result.x
        if math.hypot(xf - x0, yf - y0) > 2 or not -10 < log_beta_1 < 10:
            return None
        l11, l22, beta = math.exp(log_l11), math.exp(log_l22), 1.0 + math.exp(log_beta_1)
        shape_inverse = np.array([[l11 * l11, l11 * l21], [l11 * l21, l21 * l21 + l22 * l22]])
        eig_small, eig_large = np.linalg.eigvalsh(shape_inverse)
        scale = 2 * math.sqrt(2 ** (1 / beta) - 1)
        fwhm_major, fwhm_minor = scale / math.sqrt(eig_small), scale / math.sqrt(eig_large)
        fwhm = math.sqrt(fwhm_major * fwhm_minor)
        if not _MIN_FIT_FWHM_PIXELS <= fwhm <= self.half:
            return None
        return fwhm, 1 - fwhm_minor / fwhm_major
