"""Photon-noise limit of the quasar-image fluxes of a simulated frame (shared by tests and benchmarks)."""

import numpy as np

from lightcurver_ops.simulate import SimulationTruth, psf_stamp


def photon_limit(truth: SimulationTruth, index: int) -> dict[str, float]:
    """Relative flux error of each quasar image in frame ``index`` from photon and read noise alone: the
    Fisher matrix of the images' amplitudes with the true PSF, fluxes, sky (lens light ignored)."""
    spec, frame = truth.spec, truth.frames[index]
    images = truth.quasar_images
    half = 16
    x0 = round(np.mean([q.x_pixels[index] for q in images]))
    y0 = round(np.mean([q.y_pixels[index] for q in images]))
    size = 2 * half + 1 + 2 * 8
    profiles = []
    for q in images:
        x, y = q.x_pixels[index], q.y_pixels[index]
        ix, iy = round(x), round(y)
        stamp = psf_stamp(frame, x - ix, y - iy, half_size=half)
        canvas = np.zeros((size, size))
        ox, oy = ix - x0 + 8, iy - y0 + 8
        canvas[oy : oy + 2 * half + 1, ox : ox + 2 * half + 1] = stamp
        profiles.append(canvas)
    profiles = np.array(profiles)
    fluxes = np.array([q.flux_e_per_s_per_frame[index] * frame.transparency for q in images])
    variance = (np.tensordot(fluxes, profiles, axes=1) + frame.sky_level_e_per_s) / spec.exptime
    variance += (spec.read_noise / spec.exptime) ** 2
    fisher = np.einsum("kij,lij->kl", profiles / variance, profiles)
    errors = np.sqrt(np.diag(np.linalg.inv(fisher)))
    return {q.label: float(e / f) for q, e, f in zip(images, errors, fluxes, strict=True)}
