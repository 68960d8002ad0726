"""Point-source fluxes of one frame with the ROI model's background and astrometry fixed.

The frame's normalised ROI cutout is fitted by STARRED's deconvolution model for one epoch: the
baseline's high-resolution background and point-source positions, rotated by the frame's fixed
angle, translated by a free ``(dx, dy)``, convolved with the frame's narrow PSF, plus a free uniform
sky. The model is linear in the fluxes and the sky, so Levenberg-Marquardt converges in a few
steps; the uncertainties are the full inverse Fisher matrix, so blended images (closer than the
seeing) get their anti-correlated errors instead of lightcurver's row-sum "diagonal" (spec §11.3).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from starred.deconvolution.deconvolution import Deconv

from lightcurver_ops.minimise import levenberg_marquardt

_ITERATIONS = 20
_SERSIC_KEYS = ("amp", "R_sersic", "n_sersic", "center_x", "center_y", "e1", "e2")  # none used here


@dataclass(frozen=True)
class RoiFrameFit:
    """Point-source photometry of one frame.

    Attributes
    ----------
    fluxes : ndarray, shape (M,)
        Normalised e-/s, in the order of the model's labels.
    covariance : ndarray, shape (M, M)
        Their covariance (translation and sky marginalised), (e-/s)^2.
    translation : ndarray, shape (2,)
        Fitted ``(dx, dy)``, pixels.
    sky : float
        Fitted uniform sky, normalised e-/s per pixel.
    reduced_chi2 : float
        ``sum(r^2) / (n_good - n_par)``.
    residuals : ndarray, shape (s, s)
        ``(data - model) / noise``, NaN on masked pixels.
    """

    fluxes: np.ndarray
    covariance: np.ndarray
    translation: np.ndarray
    sky: float
    reduced_chi2: float
    residuals: np.ndarray

    @property
    def flux_uncertainties(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))


@functools.lru_cache(maxsize=4)
def _deconv(size: int, n_sources: int, subsampling: int, psf_size: int) -> Deconv:
    """A one-epoch STARRED model; its PSF is replaced per frame (the compiled model is reused)."""
    return Deconv(
        image_size=size,
        number_of_sources=n_sources,
        scale=1.0,
        upsampling_factor=subsampling,
        epochs=1,
        psf=np.zeros((1, psf_size, psf_size), np.float32),
        convolution_method="fft",
    )


def fit_roi_frame(
    data: np.ndarray,
    noise: np.ndarray,
    mask: np.ndarray,
    narrow_psf: np.ndarray,
    background: np.ndarray,
    offsets: np.ndarray,
    rotation: float,
    translation: np.ndarray,
    fit_translation: bool = True,
) -> RoiFrameFit:
    """Fit the point-source fluxes of one frame.

    Parameters
    ----------
    data, noise : ndarray, shape (s, s)
        Normalised ROI cutout and its 1-sigma noise, e-/s.
    mask : ndarray of bool, shape (s, s)
        True = bad pixel (no weight).
    narrow_psf : ndarray, shape (S, S)
        The frame's narrow PSF (sum 1), zero-padded to ``s * ss`` if smaller.
    background : ndarray, shape (s*ss, s*ss)
        The ROI model's background (normalised e-/s per sub-pixel).
    offsets : ndarray, shape (M, 2)
        The ROI model's point-source positions ``c`` (pixels from the reference cutout's centre).
    rotation : float
        The frame's rotation relative to the reference cutout, deg (fixed).
    translation : ndarray, shape (2,)
        Starting ``(dx, dy)`` (from the WCS), pixels.
    fit_translation : bool
        Fit the translation (default), or keep it: a plate solution from many stars registers the
        frame better than the ROI's own sources, and a free translation is degenerate with the flux
        ratio of blended images.

    Raises
    ------
    ValueError
        If the shapes do not match.
    """
    size = data.shape[0]
    up = background.shape[0]
    if data.shape != (size, size) or noise.shape != data.shape or mask.shape != data.shape:
        raise ValueError("data, noise and mask must be square arrays of one shape")
    if up % size:
        raise ValueError(f"background grid {up} is not a multiple of the cutout size {size}")
    ss = up // size
    pad = up - narrow_psf.shape[0]
    if pad < 0 or pad % 2:
        raise ValueError(f"PSF of {narrow_psf.shape[0]} sub-pixels cannot be centred in a grid of {up}")
    psf = np.pad(narrow_psf, pad // 2)
    n = len(offsets)
    good = ~mask & np.isfinite(data) & np.isfinite(noise) & (noise > 0)
    norm = float(np.nanmax(np.where(good, data, np.nan))) or 1.0
    weight = np.where(good, (norm / np.where(good, noise, 1.0)) ** 2, 0.0)
    scaled = np.where(good, data, 0.0) / norm
    theta, covariance, chi2 = _fit(size, n, ss, up, fit_translation)(
        jnp.asarray(scaled, jnp.float32),
        jnp.asarray(weight, jnp.float32),
        jnp.asarray(psf, jnp.float32),
        jnp.asarray(background / norm, jnp.float32),
        jnp.asarray(offsets, jnp.float32),
        jnp.float32(rotation),
        jnp.asarray(translation, jnp.float32),
    )
    theta, covariance = np.asarray(theta, np.float64), np.asarray(covariance, np.float64)
    model = _model_of(size, n, ss, up)(
        jnp.asarray(theta, jnp.float32),
        jnp.asarray(psf, jnp.float32),
        jnp.asarray(background / norm, jnp.float32),
        jnp.asarray(offsets, jnp.float32),
        jnp.float32(rotation),
    )
    residuals = np.where(good, (data - np.asarray(model, np.float64) * norm) / noise, np.nan)
    return RoiFrameFit(
        fluxes=theta[:n] * norm,
        covariance=covariance[:n, :n] * norm**2,
        translation=theta[n : n + 2],
        sky=float(theta[n + 2] * norm),
        reduced_chi2=float(chi2) / max(int(good.sum()) - (n + 3 if fit_translation else n + 1), 1),
        residuals=residuals,
    )


@functools.lru_cache(maxsize=4)
def _model_of(size: int, n: int, ss: int, up: int):
    deconv = _deconv(size, n, ss, up)

    def model(theta, psf, background, offsets, rotation):
        kwargs = {
            "kwargs_analytic": {
                "c_x": offsets[:, 0],
                "c_y": offsets[:, 1],
                "a": theta[:n],
                "dx": theta[n : n + 1],
                "dy": theta[n + 1 : n + 2],
                "alpha": jnp.reshape(rotation, (1,)),
            },
            "kwargs_background": {"h": background.reshape(-1), "mean": theta[n + 2 : n + 3]},
            "kwargs_sersic": {key: jnp.zeros(0) for key in _SERSIC_KEYS},
        }
        one = deconv.one_epoch(psf, _epoch_parameters(kwargs, n), deconv._get_background(kwargs))
        return deconv.DownsampleAllEpochs(one[None])[0] * ss**2

    return jax.jit(model)


def _epoch_parameters(kwargs: dict, n: int) -> jnp.ndarray:
    """STARRED's per-epoch parameter row: c_x, c_y, a, dx, dy, alpha, mean."""
    analytic = kwargs["kwargs_analytic"]
    return jnp.concatenate(
        [
            analytic["c_x"],
            analytic["c_y"],
            analytic["a"],
            analytic["dx"],
            analytic["dy"],
            analytic["alpha"],
            kwargs["kwargs_background"]["mean"],
        ]
    )


@functools.lru_cache(maxsize=4)
def _fit(size: int, n: int, ss: int, up: int, fit_translation: bool):
    model = _model_of(size, n, ss, up)

    def fit(data, weight, psf, background, offsets, rotation, translation):
        def predicted(theta):
            return model(theta, psf, background, offsets, rotation)

        # linear start: the fluxes and sky that best fit at the starting translation
        start = jnp.concatenate([jnp.zeros(n), translation, jnp.zeros(1)])
        basis = jax.jacfwd(predicted)(start).reshape(-1, n + 3)
        columns = jnp.concatenate([basis[:, :n], basis[:, n + 2 :]], axis=1)
        base = predicted(start).reshape(-1)
        w = weight.reshape(-1)
        matrix = columns.T @ (w[:, None] * columns)
        linear = jnp.linalg.solve(matrix, columns.T @ (w * (data.reshape(-1) - base)))
        theta0 = jnp.concatenate([linear[:n], translation, linear[n:]])
        free = jnp.ones(n + 3).at[n : n + 2].set(1.0 if fit_translation else 0.0)
        theta, covariance, chi2, _ = levenberg_marquardt(predicted, theta0, data, weight, _ITERATIONS, free)
        return theta, covariance, chi2

    return jax.jit(fit)
