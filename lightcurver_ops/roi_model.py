"""Joint STARRED model of the calibrated ROI cutouts: a high-resolution background and point sources.

STARRED's deconvolution model (``starred.deconvolution.Deconv``), loss and noise propagation, as
lightcurver's ROI modelling (spec §6.12): every epoch is the sub-sampled background ``h`` plus the
point sources (shared positions ``c``, per-epoch amplitudes ``a``), rotated by the epoch's fixed
angle, translated by ``(dx, dy)``, convolved with the epoch's narrow PSF, plus a uniform sky.

- Stage 1 (``roi_deconv_translations_iters``, L-BFGS-B as lightcurver): translations and amplitudes
  free, background and positions fixed.
- Stage 2 (``roi_deconv_all_iters``): also the background (unless ``further_optimize_background`` is
  off), the sky per epoch and the positions (fixed with ``fix_point_source_astrometry: true``, a
  Gaussian prior of that many pixels when it is a number). The loss has kinks (the starlet L1 norm
  and the positivity penalty of the background, which starts at zero, on every kink at once):
  L-BFGS alone stalls there, at a loss several times the optimum, with a background holed and
  lopsided about the images that pulls their positions (0.06-0.08 pixels on noiseless data). So,
  as STARRED recommends for a free background and as lightcurver did, adabelief runs first
  (``roi_deconv_all_iters`` steps, :func:`lightcurver_ops.minimise.minimise_adabelief`), then
  optax's L-BFGS polishes until the loss stops changing (the same count being its limit).
- Stage 3: the background fixed, positions, amplitudes, translations and sky refined by L-BFGS
  until converged (few parameters: fast and precise astrometry).

The per-frame fluxes of the light curves are fitted afterwards with this model's background and
positions fixed (:mod:`lightcurver_ops.roi_photometry`), the same way for every frame, old or new.
Pixel coordinates are STARRED's: ``c`` in data pixels from the stamp centre ``(s - 1) / 2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from starred.deconvolution.deconvolution import setup_model
from starred.deconvolution.loss import Loss, Prior
from starred.deconvolution.parameters import ParametersDeconv
from starred.optim.optimization import Optimizer
from starred.utils.noise_utils import propagate_noise

from lightcurver_ops.minimise import minimise_adabelief, minimise_lbfgs
from lightcurver_ops.roi_cube import RoiCube, epoch_transform

_NOISE_SAMPLES = 500  # lightcurver's SLIT propagation settings
_TOLERANCE = 1e-7
_ADABELIEF_RATE = 1e-3  # per step, in the loss's units: data / their maximum, pixels
_REFINE_ITERATIONS = 500
_REFINE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RoiModel:
    """The fitted joint model.

    Attributes
    ----------
    labels : tuple of str
        Point-source labels, sorted.
    positions : ndarray, shape (M, 2)
        ``(x, y)`` of each point source in the reference (first) cutout, pixels from its ``[0, 0]``
        pixel centre: ``c + (dx_0, dy_0) + (s - 1) / 2``.
    background : ndarray, shape (s*ss, s*ss)
        High-resolution background (lens galaxy, ...) in the reference cutout's orientation, e-/s
        per sub-pixel, normalised (divided by the coefficients).
    fluxes : ndarray, shape (N, M)
        Point-source fluxes of each epoch of the joint fit, normalised e-/s.
    translations : ndarray, shape (N, 2)
        ``(dx, dy)`` of each epoch, pixels.
    rotations : ndarray, shape (N,)
        Fixed rotation of each epoch relative to the first, deg.
    sky : ndarray, shape (N,)
        Uniform sky of each epoch, normalised e-/s per pixel.
    model, residuals : ndarray, shape (N, s, s)
        Model of each epoch, and ``(data - model) / noise`` (NaN on masked pixels).
    reduced_chi2 : ndarray, shape (N,)
        ``sum(r^2) / n_good`` per epoch.
    loss_history : ndarray
        Loss of stage 2 at each iteration (adabelief, then L-BFGS).
    iterations : tuple of int
        Iterations run by stage 1, stage 2 and the final refinement of the point sources.
    subsampling : int
    """

    labels: tuple[str, ...]
    positions: np.ndarray
    background: np.ndarray
    fluxes: np.ndarray
    translations: np.ndarray
    rotations: np.ndarray
    sky: np.ndarray
    model: np.ndarray
    residuals: np.ndarray
    reduced_chi2: np.ndarray
    loss_history: np.ndarray
    iterations: tuple[int, int, int]
    subsampling: int

    def point_source_offsets(self) -> np.ndarray:
        """``c``: positions from the reference cutout's centre minus its translation, shape (M, 2)."""
        centre = (self.background.shape[0] // self.subsampling - 1) / 2.0
        return self.positions - centre - self.translations[0]


def initial_translations(cube: RoiCube) -> tuple[np.ndarray, np.ndarray]:
    """Rotation of each epoch relative to the first (deg) and the starting translations, shape (N, 2)."""
    size = cube.data.shape[1]
    transforms = [
        epoch_transform(cd, p, cube.cd[0], cube.positions[0], size)
        for cd, p in zip(cube.cd, cube.positions, strict=True)
    ]
    return np.array([t[0] for t in transforms]), np.array([t[1] for t in transforms])


def _initial_fluxes(cube: RoiCube, offsets: np.ndarray) -> np.ndarray:
    """A rough start: each source's peak pixel over the PSF's peak pixel share, epoch-major."""
    centre = (cube.data.shape[1] - 1) / 2.0
    ss = cube.subsampling
    fluxes = []
    for data, psf in zip(cube.data, cube.psf, strict=True):
        size = psf.shape[0] // ss
        peak = psf.reshape(size, ss, size, ss).sum(axis=(1, 3)).max()
        for x, y in offsets + centre:
            value = data[round(y), round(x)]
            fluxes.append(max(float(value) / peak, 0.0) / len(offsets) + 1e-3)
    return np.asarray(fluxes)


def fit_roi_model(
    cube: RoiCube,
    sources: Mapping[str, tuple[float, float]],
    *,
    translations_iters: int,
    all_iters: int,
    regularization: Mapping[str, float],
    fix_astrometry: bool | float = False,
    starting_background: np.ndarray | None = None,
    further_optimize_background: bool = True,
    fit_translations: bool = True,
) -> RoiModel:
    """Fit STARRED's joint model to the ROI cube.

    Parameters
    ----------
    cube : RoiCube
        The normalised cutouts (at least one epoch).
    sources : mapping of str to (x, y)
        Point sources by label, ``(x, y)`` pixel position in the first cutout.
    translations_iters, all_iters : int
        Iteration limits of the two stages.
    regularization : mapping
        ``roi_model_regularization``: ``regularization_strength_scales``, ``_hf``, ``_positivity``,
        ``_pts_source``, ``regularization_scatter_fluxes_pre_optim``, ``_main_optim``.
    fix_astrometry : bool or float
        True: positions fixed; False: free; a number: Gaussian prior of that sigma (pixels).
    starting_background : ndarray, shape (s*ss, s*ss), optional
        Initial background (normalised e-/s per sub-pixel); kept fixed unless
        ``further_optimize_background``.
    further_optimize_background : bool
        Fit the background in stage 2.
    fit_translations : bool
        Fit each epoch's translation (lightcurver), or keep the one of the plate solutions.

    Raises
    ------
    ValueError
        If there is no point source, or the starting background has the wrong shape.
    """
    if not sources:
        raise ValueError("no point source to model (config point_sources is empty)")
    labels = tuple(sorted(sources))
    size = cube.data.shape[1]
    ss = cube.subsampling
    centre = (size - 1) / 2.0
    offsets = np.array([sources[label] for label in labels], dtype=float) - centre
    rotations, translations = initial_translations(cube)
    scale = float(np.nanmax(np.where(cube.mask, np.nan, cube.data)))
    data = np.where(cube.mask, 0.0, cube.data) / scale
    noise = np.where(cube.mask, 1e7, cube.noise / scale)
    sigma_2 = noise**2
    psf = _padded_psfs(cube.psf, size * ss)
    initial_a = _initial_fluxes(cube, offsets) / scale
    model, kwargs_init, kwargs_up, kwargs_down, kwargs_fixed = setup_model(
        data, sigma_2, psf, offsets[:, 0], offsets[:, 1], ss, initial_a=initial_a, convolution_method="fft"
    )
    analytic = kwargs_init["kwargs_analytic"]
    analytic["dx"], analytic["dy"] = translations[:, 0].copy(), translations[:, 1].copy()
    analytic["alpha"] = rotations.copy()
    if starting_background is not None:
        background = np.asarray(starting_background, dtype=float)
        if background.shape != (size * ss, size * ss):
            raise ValueError(
                f"starting_background must have shape {(size * ss,) * 2}, got {background.shape}"
            )
        kwargs_init["kwargs_background"]["h"] = background.ravel() / scale
    kwargs_up["kwargs_analytic"]["dx"] = list(translations[:, 0] + size / 2)
    kwargs_up["kwargs_analytic"]["dy"] = list(translations[:, 1] + size / 2)
    kwargs_down["kwargs_analytic"]["dx"] = list(translations[:, 0] - size / 2)
    kwargs_down["kwargs_analytic"]["dy"] = list(translations[:, 1] - size / 2)

    if not fit_translations:
        kwargs_fixed["kwargs_analytic"] |= {"dx": translations[:, 0].copy(), "dy": translations[:, 1].copy()}

    # stage 1: translations and amplitudes
    fixed = deepcopy(kwargs_fixed)
    fixed["kwargs_analytic"] |= {"c_x": offsets[:, 0], "c_y": offsets[:, 1], "alpha": rotations}
    fixed["kwargs_background"] = {
        "h": kwargs_init["kwargs_background"]["h"],
        "mean": kwargs_init["kwargs_background"]["mean"],
    }
    parameters = ParametersDeconv(kwargs_init, fixed, kwargs_up=kwargs_up, kwargs_down=kwargs_down)
    loss = _unregularised_loss(
        data,
        model,
        parameters,
        sigma_2,
        regularization_strength_flux_uniformity=regularization["regularization_scatter_fluxes_pre_optim"],
    )
    n1 = 0
    if translations_iters > 0:
        optimizer = Optimizer(loss, parameters, method="l-bfgs-b")
        best, _, extra, _ = optimizer.minimize(maxiter=translations_iters)
        n1 = int(extra.get("nit", translations_iters)) if isinstance(extra, dict) else translations_iters
        kwargs_stage1 = parameters.args2kwargs(best)
    else:
        kwargs_stage1 = parameters.args2kwargs(parameters.kwargs2args(kwargs_init))

    # stage 2: background, sky, positions, translations, amplitudes
    weights = propagate_noise(
        model,
        np.sqrt(sigma_2),
        kwargs_stage1,
        wavelet_type_list=["starlet"],
        method="SLIT",
        num_samples=_NOISE_SAMPLES,
        seed=1,
        likelihood_type="chi2",
        verbose=False,
        upsampling_factor=ss,
    )[0]
    fixed = deepcopy(kwargs_fixed)
    fixed["kwargs_analytic"]["alpha"] = rotations
    if fix_astrometry is True:
        fixed["kwargs_analytic"] |= {"c_x": offsets[:, 0], "c_y": offsets[:, 1]}
    if not further_optimize_background and starting_background is not None:
        fixed["kwargs_background"]["h"] = kwargs_init["kwargs_background"]["h"]
    prior = None
    if fix_astrometry is not True and fix_astrometry is not False:
        sigma = float(fix_astrometry)
        prior = Prior(
            prior_analytic=[["c_x", offsets[:, 0], sigma], ["c_y", offsets[:, 1], sigma]],
        )
    parameters = ParametersDeconv(
        deepcopy(kwargs_stage1), fixed, kwargs_up=kwargs_up, kwargs_down=kwargs_down
    )
    loss = Loss(
        data,
        model,
        parameters,
        sigma_2,
        regularization_terms="l1_starlet",
        regularization_strength_scales=regularization["regularization_strength_scales"],
        regularization_strength_hf=regularization["regularization_strength_hf"],
        regularization_strength_positivity=regularization["regularization_strength_positivity"],
        regularization_strength_pts_source=regularization["regularization_strength_pts_source"],
        regularization_strength_flux_uniformity=regularization["regularization_scatter_fluxes_main_optim"],
        W=weights,
        prior=prior,
    )
    start = parameters.kwargs2args(kwargs_stage1)

    def stage_2(p):
        p, warm = minimise_adabelief(loss, p, max(all_iters, 1), _ADABELIEF_RATE)
        p, polish, n = minimise_lbfgs(loss, p, max(all_iters, 2), _TOLERANCE)
        return p, warm, polish, n

    best, warm, polish, n2 = jax.jit(stage_2)(jnp.asarray(start, jnp.float32))
    history = np.concatenate([np.asarray(warm), np.asarray(polish)[: int(n2)]])
    n2 = len(history)
    kwargs_stage2 = parameters.args2kwargs(best)

    # stage 3: the background fixed, the point sources, translations and sky refined (a smooth
    # problem of few parameters, which the pixel grid's thousands slow down in stage 2)
    fixed = deepcopy(fixed)
    fixed["kwargs_background"]["h"] = kwargs_stage2["kwargs_background"]["h"]
    parameters = ParametersDeconv(
        deepcopy(kwargs_stage2), fixed, kwargs_up=kwargs_up, kwargs_down=kwargs_down
    )
    loss = _unregularised_loss(data, model, parameters, sigma_2, prior=prior)
    best, _, n3 = jax.jit(lambda p: minimise_lbfgs(loss, p, _REFINE_ITERATIONS, _REFINE_TOLERANCE))(
        jnp.asarray(parameters.kwargs2args(kwargs_stage2), jnp.float32)
    )
    kwargs_final = parameters.args2kwargs(best)
    return _result(cube, model, kwargs_final, labels, scale, rotations, history, (n1, n2, int(n3)))


def _unregularised_loss(data, model, parameters, sigma_2, **terms) -> Loss:
    """STARRED's loss without the background's starlet regularisation (background fixed)."""
    return Loss(
        data,
        model,
        parameters,
        sigma_2,
        regularization_terms="l1_starlet",
        regularization_strength_scales=0.0,
        regularization_strength_hf=0.0,
        **terms,
    )


def _padded_psfs(psf: np.ndarray, size: int) -> np.ndarray:
    """Narrow PSFs zero-padded (centred) to the ROI's sub-sampled size, as STARRED's FFT needs."""
    pad = size - psf.shape[1]
    if pad < 0 or pad % 2:
        raise ValueError(f"PSF of {psf.shape[1]} sub-pixels cannot be centred in an ROI grid of {size}")
    return np.pad(psf, ((0, 0), (pad // 2, pad // 2), (pad // 2, pad // 2)))


def _result(
    cube: RoiCube,
    model,
    kwargs: dict,
    labels: Sequence[str],
    scale: float,
    rotations: np.ndarray,
    history: np.ndarray,
    iterations: tuple[int, int, int],
) -> RoiModel:
    n_epochs, size, _ = cube.data.shape
    analytic = kwargs["kwargs_analytic"]
    fitted = np.asarray(model.model(kwargs), dtype=np.float64) * scale
    residuals = np.where(cube.mask, np.nan, (cube.data - fitted) / cube.noise)
    good = (~cube.mask).sum(axis=(1, 2))
    translations = np.stack([np.asarray(analytic["dx"]), np.asarray(analytic["dy"])], axis=-1).astype(float)
    centre = (size - 1) / 2.0
    offsets = np.stack([np.asarray(analytic["c_x"]), np.asarray(analytic["c_y"])], axis=-1).astype(float)
    return RoiModel(
        labels=tuple(labels),
        positions=offsets + translations[0] + centre,
        background=np.asarray(kwargs["kwargs_background"]["h"], dtype=np.float64).reshape(
            size * cube.subsampling, -1
        )
        * scale,
        fluxes=np.asarray(analytic["a"], dtype=np.float64).reshape(n_epochs, len(labels))
        * scale
        * model.scale,
        translations=translations,
        rotations=rotations,
        sky=np.asarray(kwargs["kwargs_background"]["mean"], dtype=np.float64) * scale,
        model=fitted,
        residuals=residuals,
        reduced_chi2=np.nansum(residuals**2, axis=(1, 2)) / np.maximum(good, 1),
        loss_history=np.asarray(history, dtype=np.float64),
        iterations=iterations,
        subsampling=cube.subsampling,
    )
