"""STARRED PSF models fitted to the reference stars of many frames at once.

The model is STARRED's (``starred.psf.psf.PSF``, spec §6.7): a narrow PSF on a grid ``subsampling``
times finer than the data, ``C * Moffat(fwhm_x, fwhm_y, phi, beta) + h`` with ``h`` a free pixel
grid, convolved for each star with STARRED's Gaussian of FWHM 2 sub-pixels (amplitude ``a_i``, offset
``x0_i, y0_i``) and averaged back onto the data pixels. The loss is STARRED's (``starred.psf.loss``):
half the masked chi2 plus the starlet L1 norm of ``h`` weighted by the noise propagated to the
starlet scales (``starred.utils.noise_utils.propagate_noise``, Monte Carlo, 100 draws). The forward
model, the starlet transform and the convolutions are STARRED's own functions; what is rewritten here
is the driver, so that a run over many frames is one compiled program:

- every frame is padded to the same number of stars (fully masked dummy stars, zero weight), so all
  frames share shapes and one compiled function serves all of them (and later runs, through JAX's
  persistent compilation cache, :func:`enable_compilation_cache`);
- the per-frame fit is a pure function of arrays, ``jax.vmap``-ed over frames; the regularisation
  strengths and tolerance are traced arguments, so changing them does not recompile;
- stage 1 (Moffat, amplitudes, offsets; ``h = 0``) and stage 2 (``h``, amplitudes, offsets; Moffat
  fixed) both run optax's L-BFGS in a ``lax.while_loop`` that stops when the relative loss change
  stays below a tolerance for several iterations, instead of lightcurver's 100 scipy L-BFGS-B steps
  and 3000 fixed adabelief steps;
- with ``field_distortion``, a third stage frees STARRED's distortion coefficients (dilation and
  shear linear in the stars' rescaled frame positions) with the stars and the grid, as STARRED's
  ``build_psf`` does; the stored PSFs are undistorted and :func:`distorted_psf` evaluates them at a
  position;
- the noise weights of the regularisation are drawn inside the compiled function (same algorithm as
  ``propagate_noise``: 100 noise realisations of the median noise map, blurred by the Gaussian
  kernel, starlet-transformed; their standard deviation per scale and pixel).

Differences from ``build_psf`` forced or chosen here: bounds are imposed by reparametrisation
(``fwhm = 2 + softplus(u)`` data pixels, ``beta = softplus(v)``) rather than L-BFGS-B boxes (no upper
bound on the FWHM, whose STARRED bound is the stamp size); the Moffat amplitude ``C`` is fixed to 1
because it is degenerate with the star amplitudes (STARRED's model divides ``a_i`` by ``C``); the
regularisation term counts only the real stars of a padded frame. Computations run in float32, as
STARRED does by default.

Pixel coordinates in stamps are ``[y, x]``; offsets ``x0, y0`` are in data pixels from the stamp
centre.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage
from starred.psf.psf import PSF, apply_distortion
from starred.utils.jax_utils import decompose

from lightcurver_ops._sep import sep_extract
from lightcurver_ops.cutouts import Stamp
from lightcurver_ops.jax_programs import call_program
from lightcurver_ops.minimise import minimise_lbfgs

_MIN_FWHM = 2.0  # STARRED's lower bound on the Moffat FWHM (data pixels)
_BETA_GUESS = 2.0  # STARRED's initial Moffat index
_NOISE_DRAWS = 100  # Monte Carlo realisations in STARRED's propagate_noise
_NEIGHBOUR_THRESHOLD = 3.0  # sep detection threshold (sigma) of the neighbour mask, as lightcurver
_NEIGHBOUR_MIN_AREA = 15
_NEIGHBOUR_DEBLEND = 0.001
_MASKED_NOISE = 1e6  # noise given to bad pixels after sanitising (e-/s); their weight is zero anyway
_FWHM_ZOOM = 8  # interpolation factor of the full PSF when measuring its effective FWHM


# --------------------------------------------------------------------------------------------------
# Star preparation


@dataclass(frozen=True)
class PsfStars:
    """The stars of one frame ready for a PSF fit.

    Attributes
    ----------
    data : ndarray, shape (N, s, s), float64
        Sky-subtracted stamps, e-/s; 0 where masked.
    noise : ndarray, shape (N, s, s), float64
        1-sigma noise, e-/s; finite and positive everywhere (large where masked).
    mask : ndarray, shape (N, s, s), bool
        True = bad pixel (the stamp's mask, NaN pixels, and the segments of neighbouring sources).
    star_ids : tuple of str
        Identifier of each star, in the order of the arrays.
    positions : ndarray, shape (N, 2), optional
        ``(x, y)`` of each star in its frame rescaled to about [-0.5, 0.5] (lightcurver's
        ``(xy - (dims - 1) / 2) / dims``), where a field distortion is evaluated.
    """

    data: np.ndarray
    noise: np.ndarray
    mask: np.ndarray
    star_ids: tuple[str, ...]
    positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.data)
        if len(shape) != 3 or shape[1] != shape[2] or shape[0] < 1:
            raise ValueError(f"PSF star data must have shape (N, s, s) with N >= 1, got {shape}")
        if np.shape(self.noise) != shape or np.shape(self.mask) != shape:
            raise ValueError("PSF star data, noise and mask must have the same shape")
        if len(self.star_ids) != shape[0]:
            raise ValueError(f"{len(self.star_ids)} star ids for {shape[0]} stamps")


def neighbour_mask(data: np.ndarray, noise: np.ndarray, bad: np.ndarray, x: float, y: float) -> np.ndarray:
    """Pixels of sources other than the star in a stamp (lightcurver's ``mask_surrounding_stars``).

    Sources are sep segments (3 sigma, 15 pixels, deblending contrast 0.001); the segment whose
    centroid is nearest the star's position is kept, all the others are masked. Faint wings outside
    the segments stay unmasked.

    Parameters
    ----------
    data, noise : ndarray, shape (s, s)
        Stamp and its 1-sigma noise, e-/s, finite (sanitised).
    bad : ndarray of bool, shape (s, s)
        Pixels already masked; sep ignores them.
    x, y : float
        The star's position in stamp pixels.

    Returns
    -------
    ndarray of bool, shape (s, s)
        True on the neighbours' segments.
    """
    objects, segmentation = sep_extract(
        np.ascontiguousarray(data, dtype=np.float64),
        thresh=_NEIGHBOUR_THRESHOLD,
        err=np.ascontiguousarray(noise, dtype=np.float64),
        mask=np.ascontiguousarray(bad, dtype=bool),
        minarea=_NEIGHBOUR_MIN_AREA,
        deblend_cont=_NEIGHBOUR_DEBLEND,
        segmentation_map=True,
    )
    if len(objects) == 0:
        return np.zeros(data.shape, dtype=bool)
    central = int(np.argmin(np.hypot(objects["x"] - x, objects["y"] - y))) + 1
    return (segmentation > 0) & (segmentation != central)


def rescaled_position(position: Sequence[float], frame_shape: Sequence[int]) -> np.ndarray:
    """``(x, y)`` frame pixels rescaled to about [-0.5, 0.5]: ``(xy - (dims - 1) / 2) / dims`` with
    ``dims = (nx, ny)`` (lightcurver's coordinates of the field distortion polynomial)."""
    dims = np.array([frame_shape[1], frame_shape[0]], dtype=float)
    return (np.asarray(position, dtype=float) - (dims - 1) / 2) / dims


def prepare_psf_stars(
    stamps: Mapping[str, Stamp], max_masked_fraction: float = 0.4, frame_shape: Sequence[int] | None = None
) -> PsfStars:
    """Sanitise and mask the reference-star stamps of one frame; drop the stars masked too much.

    NaN pixels are masked and set to data 0 and a large noise; the segments of neighbouring sources
    are masked (:func:`neighbour_mask`); stars with more than ``max_masked_fraction`` of their pixels
    masked are dropped.

    Parameters
    ----------
    stamps : mapping of str to Stamp
        Star id to stamp (as :func:`lightcurver_ops.cutouts.read_frame_cutouts` returns them); all
        stamps of the same size.
    max_masked_fraction : float
        Largest fraction of masked pixels a star may have (lightcurver: 0.4).
    frame_shape : sequence of int, optional
        ``(ny, nx)`` of the frame: gives the stars' rescaled positions (for a field distortion).

    Returns
    -------
    PsfStars
        The kept stars, in the mapping's order.

    Raises
    ------
    ValueError
        If the stamps differ in size, or no star is left.
    """
    if not 0.0 <= max_masked_fraction <= 1.0:
        raise ValueError(f"max_masked_fraction must lie in [0, 1], got {max_masked_fraction}")
    sizes = {stamp.size for stamp in stamps.values()}
    if len(sizes) > 1:
        raise ValueError(f"PSF stars must share one stamp size, got sizes {sorted(sizes)}")
    kept_ids, datas, noises, masks = [], [], [], []
    for star_id, stamp in stamps.items():
        data = np.asarray(stamp.data, dtype=np.float64)
        noise = np.asarray(stamp.noise, dtype=np.float64)
        bad = np.asarray(stamp.mask, dtype=bool) | ~np.isfinite(data) | ~np.isfinite(noise) | (noise <= 0)
        data = np.where(bad, 0.0, data)
        noise = np.where(bad, _MASKED_NOISE, noise)
        x, y = stamp.position[0] - stamp.origin[0], stamp.position[1] - stamp.origin[1]
        bad |= neighbour_mask(data, noise, bad, x, y)
        if bad.mean() > max_masked_fraction:
            continue
        kept_ids.append(star_id)
        datas.append(np.where(bad, 0.0, data))
        noises.append(np.where(bad, _MASKED_NOISE, noise))
        masks.append(bad)
    if not kept_ids:
        raise ValueError("no PSF star left after masking")
    positions = None
    if frame_shape is not None:
        positions = np.array([rescaled_position(stamps[star].position, frame_shape) for star in kept_ids])
    return PsfStars(np.stack(datas), np.stack(noises), np.stack(masks), tuple(kept_ids), positions)


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class PsfFit:
    """A frame's fitted PSF.

    Attributes
    ----------
    narrow_psf : ndarray, shape (s*ss, s*ss)
        Narrow PSF (Moffat + pixel grid) on the sub-sampled grid, sum 1.
    full_psf : ndarray, shape (s*ss, s*ss)
        Narrow PSF convolved with STARRED's Gaussian of FWHM 2 sub-pixels: the PSF sampled at the
        sub-pixel centres (its mean over each ``ss x ss`` block is the pixel-integrated PSF), sum 1.
    moffat_fwhm_pixels : float
        Mean of the narrow Moffat's FWHM along its two axes, data pixels.
    moffat_beta : float
        Index of the narrow Moffat (its wings fall as ``r**(-2 beta)``).
    effective_fwhm_pixels : float
        ``2 sqrt(A_half / pi)`` of the full PSF (cubic interpolation, ``A_half`` the area above half its
        peak), data pixels; the simulator's ``FrameTruth.seeing_fwhm_pixels`` has the same definition.
    reduced_chi2 : float
        ``sum(w r^2 / sigma^2) / (sum(w) - n_par)`` over the stars' good pixels ``w``, with
        ``n_par = 4 + 3 N`` (Moffat shape, and amplitude and offsets of each star); the regularised
        pixel grid is not counted. lightcurver used ``sum(w r^2 / sigma^2) / sum(w)``.
    chi2_per_star : ndarray, shape (N,)
        ``sum(w r^2 / sigma^2) / sum(w)`` of each star.
    residuals : ndarray, shape (N, s, s)
        ``(data - model) / noise``; NaN on masked pixels.
    amplitudes : ndarray, shape (N,)
        Flux of each star in the model, e-/s (sum of its model over the sub-sampled plane).
    offsets : ndarray, shape (N, 2)
        ``(x0, y0)`` of each star from the stamp centre, data pixels.
    loss_history : ndarray, shape (n_iterations,)
        Loss of the pixel-grid stage at each iteration (data in units of the frame's normalisation).
    n_iterations : tuple of int
        Iterations of the Moffat stage and of the pixel-grid (and distortion) stages.
    converged : bool
        Whether the pixel-grid (and distortion) stages stopped on their tolerance before their limit.
    distortion : ndarray, shape (3, 2)
        Field-distortion coefficients (STARRED's ``dilation_x``, ``dilation_y``, ``shear``: linear in
        the rescaled frame position); zeros without ``field_distortion``. The stored PSFs are the
        undistorted ones; :func:`distorted_psf` gives them at a position.
    relative_loss_differential : float
        lightcurver's convergence measure: the range (max - min) of the last 10 % of
        ``loss_history`` over the range of the first 90 %.
    star_ids : tuple of str
        The stars, in the order of the arrays.
    """

    narrow_psf: np.ndarray
    full_psf: np.ndarray
    moffat_fwhm_pixels: float
    moffat_beta: float
    effective_fwhm_pixels: float
    reduced_chi2: float
    chi2_per_star: np.ndarray
    residuals: np.ndarray
    amplitudes: np.ndarray
    offsets: np.ndarray
    loss_history: np.ndarray
    n_iterations: tuple[int, int]
    converged: bool
    distortion: np.ndarray
    relative_loss_differential: float
    star_ids: tuple[str, ...]


def relative_loss_differential(loss_history: np.ndarray) -> float:
    """(max - min) of the last 10 % of a loss history over (max - min) of the first 90 %.

    Parameters
    ----------
    loss_history : ndarray, shape (n,)
        Loss at each iteration, n >= 2.

    Returns
    -------
    float
        The ratio; 0 when the first 90 % is constant.
    """
    loss = np.asarray(loss_history, dtype=np.float64)
    split = max(1, min(len(loss) - 1, round(0.9 * len(loss))))
    head, tail = np.ptp(loss[:split]), np.ptp(loss[split:])
    return float(tail / head) if head > 0 else 0.0


def effective_fwhm(psf: np.ndarray, subsampling: int) -> float:
    """``2 sqrt(A_half / pi)`` of a sub-sampled PSF, data pixels.

    The PSF is interpolated by cubic splines on a grid 8 times finer before counting the area above
    half its peak.

    Parameters
    ----------
    psf : ndarray, shape (n, n)
        PSF sampled at ``subsampling`` points per data pixel.
    subsampling : int
        Samples per data pixel.

    Returns
    -------
    float
        The effective FWHM, data pixels.
    """
    fine = ndimage.zoom(np.asarray(psf, dtype=np.float64), _FWHM_ZOOM, order=3)
    area = np.count_nonzero(fine > 0.5 * fine.max()) / (_FWHM_ZOOM * subsampling) ** 2
    return 2.0 * math.sqrt(area / math.pi)


# --------------------------------------------------------------------------------------------------
# Compilation cache


SHARED_CACHE_ENV_VAR = "JAX_COMPILATION_CACHE_DIR"
"""JAX's own setting; when set, one cache serves every work directory (a machine, a test session)."""


def enable_compilation_cache(directory: Path | str) -> None:
    """Keep JAX's compiled programs in ``directory`` (or in ``JAX_COMPILATION_CACHE_DIR`` when set)
    so that later processes reuse them.

    Every compilation is cached (no minimum compile time or size).

    Parameters
    ----------
    directory : Path or str
        Cache directory; created if missing.
    """
    path = Path(os.environ.get(SHARED_CACHE_ENV_VAR) or directory)
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# --------------------------------------------------------------------------------------------------
# The compiled fit


@dataclass(frozen=True)
class _Shapes:
    stamp: int
    stars: int
    subsampling: int
    n_iter_analytic: int
    n_iter_pixels: int
    distortion: bool = False


def _model(shapes: _Shapes) -> PSF:
    return PSF(
        image_size=shapes.stamp,
        number_of_sources=shapes.stars,
        upsampling_factor=shapes.subsampling,
        field_distortion=shapes.distortion,
        convolution_method="fft",
        include_moffat=True,
        elliptical_moffat=True,
    )


_DISTORTION_KEYS = ("dilation_x", "dilation_y", "shear")


def _distortion_kwargs(coefficients: jnp.ndarray) -> dict:
    """STARRED's distortion keywords from a (3, 2) array of coefficients."""
    return {key: coefficients[i] for i, key in enumerate(_DISTORTION_KEYS)}


def _kwargs(
    moffat: dict, stars: dict, background: jnp.ndarray, n_stars: int, distortion: jnp.ndarray
) -> dict:
    """STARRED's keyword-argument tree from the fitted quantities (``C = 1``, no sky)."""
    return {
        "kwargs_moffat": moffat | {"C": jnp.ones(())},
        "kwargs_gaussian": stars,
        "kwargs_background": {"background": background, "mean": jnp.zeros(n_stars)},
        "kwargs_distortion": _distortion_kwargs(distortion),
    }


def _moffat(u: dict) -> dict:
    return {
        "fwhm_x": _MIN_FWHM + jax.nn.softplus(u["fwhm_x"]),
        "fwhm_y": _MIN_FWHM + jax.nn.softplus(u["fwhm_y"]),
        "phi": u["phi"],
        "beta": jax.nn.softplus(u["beta"]),
    }


def _softplus_inverse(value: jnp.ndarray) -> jnp.ndarray:
    return value + jnp.log(-jnp.expm1(-value))


def _noise_weights(model: PSF, noise_map: jnp.ndarray, key: jax.Array, n_scales: int) -> jnp.ndarray:
    """STARRED's Monte Carlo noise propagation (``propagate_noise``, chi2 likelihood) in JAX.

    ``noise_map`` (s, s) is the frame's effective noise map; returns the standard deviation of each
    starlet scale at each sub-pixel, shape (n_scales + 1, s*ss, s*ss).
    """
    ss = model.upsampling_factor
    std_up = jnp.repeat(jnp.repeat(noise_map, ss, axis=0), ss, axis=1) / ss**2
    var_up = jnp.repeat(jnp.repeat(noise_map**2, ss, axis=0), ss, axis=1) / ss**2
    kernel = model.shifted_gaussians(0, jnp.zeros(1), jnp.zeros(1))
    kernel = kernel / kernel.sum()

    def draw(k):
        noise = std_up * jax.random.normal(k, std_up.shape) / var_up
        return decompose(model._convolve(noise, kernel), n_scales)

    return jnp.std(jax.vmap(draw)(jax.random.split(key, _NOISE_DRAWS)), axis=0)


def _fit_one(
    shapes: _Shapes,
    data,
    weight,
    noise_map,
    a_init,
    fwhm_guess,
    positions,
    n_stars,
    regularization,
    tolerance,
):
    """Fit one (padded) frame; ``weight`` is good/sigma^2 (0 on bad pixels and dummy stars)."""
    model = _model(shapes)
    n_pix = shapes.stamp * shapes.subsampling
    n_scales = int(np.log2(n_pix))
    zeros = jnp.zeros(shapes.stars)
    grid0 = jnp.zeros(n_pix * n_pix)
    no_distortion = jnp.zeros((3, 2))

    def chi2(moffat, stars, background, distortion=no_distortion):
        kwargs = _kwargs(moffat, stars, background, shapes.stars, distortion)
        residual = data - model.model(**kwargs, positions=positions)
        return 0.5 * jnp.sum(weight * residual**2)

    def loss_analytic(p):
        return chi2(_moffat(p["moffat"]), p["stars"], grid0)

    guess = _softplus_inverse(fwhm_guess - _MIN_FWHM)
    start = {
        "moffat": {
            "fwhm_x": guess,
            "fwhm_y": guess,
            "phi": jnp.zeros(()),
            "beta": _softplus_inverse(_BETA_GUESS),
        },
        "stars": {"a": a_init, "x0": zeros, "y0": zeros},
    }
    p1, _, n1 = minimise_lbfgs(loss_analytic, start, shapes.n_iter_analytic, tolerance)
    moffat = _moffat(p1["moffat"])

    weights = _noise_weights(model, noise_map, jax.random.PRNGKey(1), n_scales)[:-1]

    def regularised(p):
        h = p["background"].reshape(n_pix, n_pix)
        starlet = decompose(h, n_scales)[:-1]
        high = jnp.sum(weights[0] * jnp.abs(starlet[0]))
        other = jnp.sum(weights[1:] * jnp.abs(starlet[1:]))
        regul = (regularization[1] * high + regularization[0] * other) / shapes.subsampling**2 * n_stars
        return chi2(moffat, p["stars"], p["background"], p.get("distortion", no_distortion)) + regul

    p2, history, n2 = minimise_lbfgs(
        regularised, {"stars": p1["stars"], "background": grid0}, shapes.n_iter_pixels, tolerance
    )
    n3 = jnp.zeros((), jnp.int32)
    if shapes.distortion:
        # STARRED's third stage: the distortion coefficients freed with the stars and the grid
        p2, _, n3 = minimise_lbfgs(
            regularised, p2 | {"distortion": no_distortion}, shapes.n_iter_pixels, tolerance
        )
    distortion = p2.get("distortion", no_distortion)
    kwargs = _kwargs(moffat, p2["stars"], p2["background"], shapes.stars, distortion)
    narrow = model.get_narrow_psf(**kwargs, norm=False)
    return {
        "model": model.model(**kwargs, positions=positions),
        "narrow": narrow / narrow.sum(),
        "full": model.get_full_psf(**kwargs, norm=True),
        "fwhm": jnp.stack([moffat["fwhm_x"], moffat["fwhm_y"]]),
        "beta": moffat["beta"],
        "flux": p2["stars"]["a"] * narrow.sum(),
        "offsets": jnp.stack([p2["stars"]["x0"], p2["stars"]["y0"]], axis=-1),
        "history": history,
        "n_iterations": jnp.stack([n1, n2, n3]),
        "distortion": distortion,
    }


@functools.lru_cache(maxsize=16)
def _compiled(shapes: _Shapes):
    """The fit of a batch of frames (vmap over the leading axis), compiled once per shape set."""
    return jax.jit(jax.vmap(functools.partial(_fit_one, shapes), in_axes=(0, 0, 0, 0, 0, 0, 0, None, None)))


# --------------------------------------------------------------------------------------------------
# Driver


def fit_psfs(
    frames: Sequence[PsfStars],
    *,
    subsampling: int,
    n_iter_analytic: int,
    n_iter_pixels: int,
    fwhm_guess_pixels: Sequence[float],
    regularization: tuple[float, float] = (1.0, 1.0),
    tolerance: float = 1e-5,
    max_stars: int | None = None,
    field_distortion: bool = False,
) -> list[PsfFit]:
    """Fit STARRED PSF models to the stars of many frames in one compiled, vectorised run.

    Parameters
    ----------
    frames : sequence of PsfStars
        The stars of each frame (:func:`prepare_psf_stars`); all stamps of one size ``s``.
    subsampling : int
        Sub-pixels per data pixel of the PSF grid (config ``subsampling_factor``).
    n_iter_analytic : int
        Iteration limit of the Moffat stage (lightcurver: 100).
    n_iter_pixels : int
        Iteration limit of the pixel-grid stage (lightcurver: 3000 adabelief steps; L-BFGS needs far
        fewer).
    fwhm_guess_pixels : sequence of float
        Seeing estimate of each frame, data pixels (starting Moffat FWHM).
    regularization : tuple of float
        ``(lambda_scales, lambda_hf)``: starlet L1 strengths of the intermediate scales and of the
        finest scale, in units of the propagated noise (lightcurver: 1, 1).
    tolerance : float
        A stage stops after 10 consecutive iterations changing the loss by less than ``tolerance``
        times its value. The loss is float32: below ~1e-5 the steps mostly chase rounding. On
        simulated 512² frames (10 stars, benchmarks/psf_batch.py's set), 1e-5 against 1e-6 takes a
        third of the time (median pixel-grid iterations 107 against 304) for the same reduced chi2
        and FWHM and star amplitudes within 0.1 mmag RMS of a fit run to 1e-7.
    max_stars : int, optional
        Pad every frame to this many stars (at least the largest frame's number) so that runs with
        different star counts share one compiled program; default the largest frame's number.
    field_distortion : bool
        Also fit STARRED's field distortion (dilation and shear linear in the stars' rescaled frame
        positions, which every frame must then carry), in a third stage as STARRED does.

    Returns
    -------
    list of PsfFit
        One per frame, in order.

    Raises
    ------
    ValueError
        If frames is empty, the stamp sizes differ, or the guesses do not match the frames.
    """
    if not frames:
        raise ValueError("no frame to fit")
    if len(fwhm_guess_pixels) != len(frames):
        raise ValueError(f"{len(fwhm_guess_pixels)} FWHM guesses for {len(frames)} frames")
    if subsampling < 1 or n_iter_analytic < 1 or n_iter_pixels < 2:
        raise ValueError("subsampling and n_iter_analytic must be >= 1, n_iter_pixels >= 2")
    sizes = {f.data.shape[1] for f in frames}
    if len(sizes) > 1:
        raise ValueError(f"all frames must share one stamp size, got {sorted(sizes)}")
    n_max = max(f.data.shape[0] for f in frames)
    if max_stars is not None:
        if max_stars < n_max:
            raise ValueError(f"max_stars={max_stars} is below the largest frame's {n_max} stars")
        n_max = max_stars
    if field_distortion and any(f.positions is None for f in frames):
        raise ValueError("field_distortion needs the stars' frame positions (prepare_psf_stars frame_shape)")
    shapes = _Shapes(sizes.pop(), n_max, subsampling, n_iter_analytic, n_iter_pixels, field_distortion)
    batch = [_padded(f, n_max) for f in frames]
    arrays = [np.stack([b[k] for b in batch]).astype(np.float32) for k in range(4)]
    fwhm = np.asarray(fwhm_guess_pixels, dtype=np.float32)
    positions = np.zeros((len(frames), n_max, 2), dtype=np.float32)
    for i, f in enumerate(frames):
        if f.positions is not None:
            positions[i, : len(f.positions)] = f.positions
    n_stars = np.array([f.data.shape[0] for f in frames], dtype=np.float32)
    # the star count enters the regularisation; it is a per-frame argument, vmapped with the data
    out = jax.device_get(
        call_program(
            "psf_fit",
            repr(shapes),
            lambda: _compiled(shapes),
            *arrays,
            fwhm,
            positions,
            n_stars,
            jnp.asarray(regularization, jnp.float32),
            jnp.float32(tolerance),
        )
    )
    return [
        _result(f, {k: v[i] for k, v in out.items()}, batch[i][4], subsampling) for i, f in enumerate(frames)
    ]


def _padded(stars: PsfStars, n_max: int) -> tuple[np.ndarray, ...]:
    """Normalised data, weights, effective noise map, starting amplitudes, norm; padded to n_max stars."""
    good = ~stars.mask
    norm = float(np.percentile(stars.data[good], 99.0))
    data = stars.data / norm
    noise = stars.noise / norm
    weight = np.where(good, 1.0 / noise**2, 0.0)
    # propagate_noise's input in build_psf: median noise over the stars, bad-anywhere pixels -> median
    noise_map = np.median(noise, axis=0)
    noise_map = np.where(good.all(axis=0), noise_map, np.median(noise_map[good.all(axis=0)]))
    flux = (data * good).sum(axis=(1, 2))
    a_init = flux / flux.mean()
    pad = n_max - len(data)
    data = np.pad(data, ((0, pad), (0, 0), (0, 0)))
    weight = np.pad(weight, ((0, pad), (0, 0), (0, 0)))
    a_init = np.pad(a_init, (0, pad), constant_values=1.0)
    return data, weight, noise_map, a_init, norm


def _result(stars: PsfStars, out: dict[str, np.ndarray], norm: float, subsampling: int) -> PsfFit:
    n = len(stars.star_ids)
    good = ~stars.mask
    model = np.asarray(out["model"][:n], dtype=np.float64) * norm
    residuals = np.where(good, (stars.data - model) / stars.noise, np.nan)
    chi2 = np.nansum(residuals**2, axis=(1, 2))
    n_good = good.sum(axis=(1, 2))
    n1, n2, n3 = (int(v) for v in out["n_iterations"])
    limit = len(out["history"])
    history = np.asarray(out["history"][:n2], dtype=np.float64)
    full = np.asarray(out["full"], dtype=np.float64)
    return PsfFit(
        narrow_psf=np.asarray(out["narrow"], dtype=np.float64),
        full_psf=full,
        moffat_fwhm_pixels=float(np.mean(out["fwhm"])),
        moffat_beta=float(out["beta"]),
        effective_fwhm_pixels=effective_fwhm(full, subsampling),
        reduced_chi2=float(chi2.sum() / (n_good.sum() - (4 + 3 * n))),
        chi2_per_star=chi2 / np.maximum(n_good, 1),
        residuals=residuals,
        amplitudes=np.asarray(out["flux"][:n], dtype=np.float64) * norm,
        offsets=np.asarray(out["offsets"][:n], dtype=np.float64),
        loss_history=history,
        n_iterations=(n1, n2 + n3),
        converged=n2 < limit and n3 < limit,
        distortion=np.asarray(out["distortion"], dtype=np.float64),
        relative_loss_differential=relative_loss_differential(history) if n2 >= 2 else 0.0,
        star_ids=stars.star_ids,
    )


def distorted_psf(
    narrow_psf: np.ndarray, distortion: np.ndarray, position: Sequence[float], subsampling: int
) -> tuple[np.ndarray, np.ndarray]:
    """A frame's PSF at a position of the field: STARRED's distortion applied to the narrow PSF.

    Parameters
    ----------
    narrow_psf : ndarray, shape (s*ss, s*ss)
        The undistorted narrow PSF (sum 1).
    distortion : ndarray, shape (3, 2)
        ``dilation_x``, ``dilation_y`` and ``shear`` coefficients (:attr:`PsfFit.distortion`).
    position : sequence of float
        The rescaled frame position (:func:`rescaled_position`).
    subsampling : int

    Returns
    -------
    narrow, full : ndarray, shape (s*ss, s*ss)
        The distorted narrow PSF and the full PSF (narrow convolved with STARRED's Gaussian of FWHM
        2 sub-pixels), each of sum 1.
    """
    narrow, full = _distorter(narrow_psf.shape[0] // subsampling, subsampling)(
        jnp.asarray(narrow_psf, jnp.float32),
        jnp.asarray(distortion, jnp.float32),
        jnp.asarray(position, jnp.float32),
    )
    narrow, full = np.asarray(narrow, np.float64), np.asarray(full, np.float64)
    return narrow / narrow.sum(), full / full.sum()


@functools.lru_cache(maxsize=4)
def _distorter(size: int, subsampling: int):
    """Compiled ``(narrow, distortion, position) -> (distorted narrow, full)`` for one grid size."""
    model = PSF(image_size=size, number_of_sources=1, upsampling_factor=subsampling, convolution_method="fft")
    kernel = model.shifted_gaussians(0, jnp.zeros(1), jnp.zeros(1))
    kernel = kernel / kernel.sum()

    def distort(narrow, distortion, position):
        narrow = apply_distortion(narrow, _distortion_kwargs(distortion), position)
        return narrow, model._convolve(narrow, kernel)

    return jax.jit(distort)
