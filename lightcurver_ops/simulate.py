"""Realistic simulated wide-field imaging time series with full ground truth.

`simulate_dataset` writes a complete lightcurver work directory: raw frames in ADU with true TAN WCS
headers, a Gaia-DR3-like catalogue of the field, a lightcurver ``config.yaml``, the header parser and
``truth.json``. The truth lets every pipeline stage be checked against injected values (sky, seeing,
WCS, star and quasar-image fluxes, cosmic rays, the bad column).

Scene
-----
- A lensed quasar at the ROI (``spec.ra0, spec.dec0``): 2-4 point-source images within 1.2 arcsec
  (the quad has a 0.56 arcsec pair), each with its own delayed light curve plus microlensing-like
  variation, around a de Vaucouleurs lens galaxy. None of them is in the catalogue.
- Catalogued sources: random field stars (G 15-21, ``spec.star_density``), at least
  ``spec.min_usable_stars`` isolated G 16-20 stars inside the ROI disk, three stars with proper
  motions of 50-300 mas/yr, a Sérsic galaxy with a large ``astrometric_excess_noise_sig``, a variable
  star with a normal catalogue entry, a saturated star, and one bright isolated star kept clear of
  cosmic rays and the bad column (``SimulationTruth.isolated_star_source_id``).
- Per frame: Moffat-plus-wing PSF, transparency, sky level with a linear gradient, pointing jitter
  and rotation; Poisson and read noise; cosmic rays (one hit next to a star in the first and middle
  frames); one bad column in every frame; clipping at the saturation level.

Conventions
-----------
- Pixel coordinates are 0-based (astropy/numpy): pixel ``(x, y)`` is ``data[y, x]`` and its centre
  is at integer ``x, y``. FITS ``CRPIX`` keywords are 1-based as usual.
- Fluxes are in e-/s above the atmosphere; a frame's pixels receive ``flux * transparency``.
- Magnitudes are in the ``r_sdss`` band: ``mag = -2.5 log10(flux_e_per_s) + zero_point``. Each
  catalogue source's ``r_sdss`` comes from its Gaia G, BP, RP with the Gaia colour polynomial of the
  spec (§6.10), so a zero-point stage can recover the zero point from the catalogue.
- Catalogue positions are at the Gaia reference epoch J2016.0; the images show each source at
  ``position + proper_motion * (t - J2016.0)`` (linear in RA cos(Dec) and Dec); parallax is listed but
  not applied (below 0.1 pixel here).
"""

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from scipy.signal import fftconvolve
from scipy.special import gammaincinv

from lightcurver_ops.catalog import CATALOG_COLUMNS
from lightcurver_ops.zeropoints import gaia_band_magnitudes

ROI_NAME = "SIMQSO"
PHOTOMETRIC_BAND = "r_sdss"
GAIA_REF_EPOCH = 2016.0
RAW_DIR = "raw"
CATALOG_FILE = "catalog/gaia_catalog.csv"
CONFIG_FILE = "config.yaml"
HEADER_PARSER_FILE = "header_parser/parse_header.py"
TRUTH_FILE = "truth.json"

_J2016_MJD = 57388.5  # MJD (TT) of the Julian epoch J2016.0; the UTC offset is irrelevant here
_MAS_PER_DEG = 3.6e6
_TELESCOPE = {
    "name": "VST",
    "latitude": -24.6,
    "longitude": -70.4,
    "elevation": 2635.0,
    "imager_name": "OmegaCAM",
}
_OVERSAMPLING = 5  # sub-pixels per pixel and axis used to integrate the PSF and the galaxies
_CAPTURE_TARGET = 0.997  # minimum PSF flux fraction inside a point source's rendered stamp
_ROI_OFFSET_FRACTION = (0.14, -0.10)  # ROI offset from the frame centre, fraction of (nx, ny)
_ROI_EXCLUSION_ARCSEC = 8.0  # no catalogue source closer than this to the ROI
_ISOLATION_PIXELS = 16.0  # minimum distance between placed (special or usable) sources
_SATURATED_ISOLATION_PIXELS = 40.0
_BRIGHT_ISOLATION_PIXELS = 48.0  # around the isolated bright star
# catalogue indices of the placed sources
_I_SATURATED, _I_ISOLATED, _I_GALAXY, _I_VARIABLE = 0, 1, 2, 3
_I_HIGH_PM = (4, 5, 6)
_USABLE_GMAG = (16.0, 20.0)
_FIELD_GMAG = (15.0, 21.0)
_FIELD_COUNT_SLOPE = 0.25  # dN/dG proportional to 10**(slope * G)
_DISK_RADIUS_FRACTION = 0.45  # ROI disk radius as a fraction of min(nx, ny)
_CR_PER_4MPIX = 30  # cosmic-ray hits per 2048 x 2048 frame
_CR_ADU = (2000.0, 20000.0)
_CR_ROI_AVOID_PIXELS = 8.0
_CR_SATURATED_AVOID_PIXELS = 20.0
_CR_ISOLATED_AVOID_PIXELS = 30.0

# Quasar images: (east, north) offsets from the lens in arcsec, time delays (days) and macro
# magnification offsets (mag) relative to A. A and B form a fold pair 0.56 arcsec apart.
_QUASAR_OFFSETS_ARCSEC = ((1.083, 0.191), (0.987, -0.359), (-0.688, -0.983), (-0.611, 0.728))
_QUASAR_DELAYS_DAYS = (0.0, 0.7, 5.3, 11.8)
_QUASAR_MAG_OFFSETS = (0.0, 0.25, 0.9, 1.3)
_QUASAR_IMAGE_SUBSETS = {2: (0, 2), 3: (0, 1, 2), 4: (0, 1, 2, 3)}
_QUASAR_A_MAG = 18.8


@dataclass(frozen=True)
class SimulationSpec:
    """Parameters of a simulated data set.

    Attributes
    ----------
    n_frames : int
        Number of frames.
    nx, ny : int
        Frame size in pixels.
    pixel_scale : float
        Pixel scale in arcsec/pixel.
    ra0, dec0 : float
        ROI (lens galaxy, centre of the quasar images) in deg; placed a few hundred pixels (for
        2k frames) from the frame centre.
    mjd0 : float
        MJD (UTC) of the first frame. The default puts the ROI at altitude ~45 deg near local
        midnight at the VST site (2023-11-01).
    cadence_days : float
        Nominal interval between frames in days (each frame jitters by up to 0.02 d).
    exptime : float
        Exposure time in s.
    gain : float
        Detector gain in e-/ADU.
    read_noise : float
        Read noise in e-.
    saturation_adu : float
        Pixel values are clipped at this level (ADU).
    seeing_range : tuple of float
        Range of the Moffat-core FWHM (arcsec), drawn per frame.
    moffat_beta_range : tuple of float
        Range of the Moffat index, drawn per frame (large: compact wings).
    wing_fraction_range : tuple of float
        Range of the flux fraction in the PSF's Gaussian wing, drawn per frame ((0, 0): no wing).
    sky_range : tuple of float
        Range of the mean sky level (e-/s/pixel), drawn per frame.
    star_density : float
        Random field stars (G 15-21) per arcmin^2 over the frame.
    min_usable_stars : int
        Isolated stars with G 16-20 placed inside the ROI disk and inside every frame, on top of
        the random field, so that small frames still have enough reference stars.
    n_quasar_images : int
        Number of lensed quasar images (2, 3 or 4).
    zero_point : float
        Magnitude (r_sdss) of a source giving 1 e-/s above the atmosphere.
    max_jitter_pixels : float
        Maximum pointing offset per axis (pixels).
    max_rotation_deg : float
        Maximum field rotation (deg).
    with_wcs : bool
        Write the true TAN WCS into the headers.
    seed : int
        Seed of every random draw.
    """

    n_frames: int = 12
    nx: int = 2048
    ny: int = 2048
    pixel_scale: float = 0.214
    ra0: float = 42.2031
    dec0: float = 19.22528
    mjd0: float = 60249.2
    cadence_days: float = 1.0
    exptime: float = 300.0
    gain: float = 2.0
    read_noise: float = 5.0
    saturation_adu: float = 60000.0
    seeing_range: tuple[float, float] = (0.7, 1.3)
    moffat_beta_range: tuple[float, float] = (2.5, 4.0)
    wing_fraction_range: tuple[float, float] = (0.03, 0.08)
    sky_range: tuple[float, float] = (20.0, 60.0)
    star_density: float = 5.0
    min_usable_stars: int = 20
    n_quasar_images: int = 4
    zero_point: float = 24.0
    max_jitter_pixels: float = 20.0
    max_rotation_deg: float = 0.3
    with_wcs: bool = True
    seed: int = 1


@dataclass(frozen=True)
class FrameTruth:
    """Ground truth of one frame.

    Attributes
    ----------
    index : int
        0-based frame index.
    file_name : str
        Raw file name under ``raw/``.
    mjd : float
        MJD (UTC) of the exposure start, also in the header (``MJD-OBS``).
    date_obs : str
        ISO UTC date of the exposure start (``DATE-OBS``).
    transparency : float
        Atmospheric transmission multiplying every source flux (not the sky).
    zero_point : float
        Effective zero point of the frame for detector fluxes: ``zero_point + 2.5 log10(transparency)``.
    seeing_fwhm_pixels : float
        Effective circular FWHM of the total PSF (pixels): ``2 sqrt(A_half / pi)`` with ``A_half`` the
        area where the continuous PSF exceeds half its peak.
    seeing_fwhm_arcsec : float
        The same in arcsec.
    moffat_fwhm_pixels : float
        Circular-equivalent FWHM of the Moffat core alone (pixels), the value drawn from seeing_range.
    moffat_alpha_pixels : float
        Moffat scale along the major axis (pixels); the minor axis scale is ``alpha * (1 - ellipticity)``.
    moffat_beta : float
        Moffat index.
    ellipticity : float
        ``1 - b/a`` of the Moffat core.
    position_angle_deg : float
        Direction of the major axis in pixel coordinates, from +x towards +y (deg).
    wing_fraction : float
        Flux fraction in the circular Gaussian wing.
    wing_sigma_pixels : float
        Standard deviation of the Gaussian wing (pixels).
    psf_stamp_half_size : int
        Point sources are rendered on ``(2h+1)^2``-pixel stamps around their nearest pixel.
    psf_captured_fraction : float
        PSF flux fraction inside such a stamp for a source centred on a pixel.
    sky_level_e_per_s : float
        Mean of the sky model over the frame (e-/s/pixel).
    sky_gradient_e_per_s_per_pixel : list of float
        ``[d sky/dx, d sky/dy]`` (e-/s/pixel per pixel); the sky is linear around the frame centre.
    pointing_offset_pixels : list of float
        Pointing jitter ``[dx, dy]`` of the frame centre relative to the reference pointing (pixels).
    rotation_deg : float
        Field rotation of the frame (deg).
    wcs_header : dict
        True TAN WCS as FITS keywords (CRPIX 1-based, CD in deg/pixel).
    roi_pixel : list of float
        ``[x, y]`` of the ROI (0-based pixels).
    cosmic_ray_pixels : list of list of int
        ``[x, y]`` of every pixel hit by a cosmic ray (0-based).
    cosmic_ray_near_star_source_id : int or None
        Catalogue star that has a cosmic ray a few pixels from its centre in this frame.
    bad_column_x : int
        The bad column (0-based x).
    quasar_fluxes_e_per_s : dict of str to float
        Flux of each quasar image above the atmosphere (e-/s), before transparency.
    """

    index: int
    file_name: str
    mjd: float
    date_obs: str
    transparency: float
    zero_point: float
    seeing_fwhm_pixels: float
    seeing_fwhm_arcsec: float
    moffat_fwhm_pixels: float
    moffat_alpha_pixels: float
    moffat_beta: float
    ellipticity: float
    position_angle_deg: float
    wing_fraction: float
    wing_sigma_pixels: float
    psf_stamp_half_size: int
    psf_captured_fraction: float
    sky_level_e_per_s: float
    sky_gradient_e_per_s_per_pixel: list[float]
    pointing_offset_pixels: list[float]
    rotation_deg: float
    wcs_header: dict[str, str | int | float]
    roi_pixel: list[float]
    cosmic_ray_pixels: list[list[int]]
    cosmic_ray_near_star_source_id: int | None
    bad_column_x: int
    quasar_fluxes_e_per_s: dict[str, float]


@dataclass(frozen=True)
class SourceTruth:
    """Ground truth of one catalogue source.

    Attributes
    ----------
    source_id : int
        Catalogue ``source_id``.
    kind : str
        ``'star'``, ``'galaxy'`` (extended Sérsic, large excess noise), ``'variable'`` (sinusoidal
        flux, normal catalogue entry) or ``'saturated'`` (core above saturation in every frame).
    ra, dec : float
        Position at the reference epoch (deg).
    pmra, pmdec : float
        Proper motion (mas/yr; pmra includes cos Dec).
    parallax : float
        Catalogue parallax (mas); not applied to the images.
    g_mag, bp_mag, rp_mag : float
        Catalogue Gaia magnitudes (noise-free).
    r_sdss_mag : float
        Band magnitude from the Gaia colour polynomial; the mean magnitude for the variable.
    flux_e_per_s : float
        Flux above the atmosphere (e-/s); the mean flux for the variable.
    flux_e_per_s_per_frame : list of float
        Flux above the atmosphere in each frame (e-/s); constant except for the variable.
    x_pixels, y_pixels : list of float
        True position in each frame (0-based pixels), proper motion applied.
    """

    source_id: int
    kind: str
    ra: float
    dec: float
    pmra: float
    pmdec: float
    parallax: float
    g_mag: float
    bp_mag: float
    rp_mag: float
    r_sdss_mag: float
    flux_e_per_s: float
    flux_e_per_s_per_frame: list[float]
    x_pixels: list[float]
    y_pixels: list[float]


@dataclass(frozen=True)
class QuasarImageTruth:
    """Ground truth of one lensed quasar image.

    Attributes
    ----------
    label : str
        ``'A'``, ``'B'``, ... as in the config's ``point_sources``.
    ra, dec : float
        Position (deg).
    offset_arcsec : list of float
        ``[east, north]`` offset from the lens galaxy (arcsec).
    delay_days : float
        Time delay relative to A (days); the image shows the intrinsic curve at ``t - delay``.
    magnification_mag : float
        Macro-magnification offset relative to A (mag).
    mag_per_frame : list of float
        r_sdss magnitude in each frame.
    flux_e_per_s_per_frame : list of float
        Flux above the atmosphere in each frame (e-/s).
    intrinsic_mag_per_frame : list of float
        Zero-mean intrinsic quasar variation at ``t - delay`` (mag).
    microlensing_mag_per_frame : list of float
        Independent microlensing-like variation (mag).
    x_pixels, y_pixels : list of float
        Position in each frame (0-based pixels).
    """

    label: str
    ra: float
    dec: float
    offset_arcsec: list[float]
    delay_days: float
    magnification_mag: float
    mag_per_frame: list[float]
    flux_e_per_s_per_frame: list[float]
    intrinsic_mag_per_frame: list[float]
    microlensing_mag_per_frame: list[float]
    x_pixels: list[float]
    y_pixels: list[float]


@dataclass(frozen=True)
class SersicTruth:
    """An extended Sérsic source, convolved with each frame's PSF.

    Attributes
    ----------
    source_id : int or None
        Catalogue ``source_id`` (None for the lens galaxy, which is not in the catalogue).
    ra, dec : float
        Centre (deg).
    flux_e_per_s : float
        Flux above the atmosphere inside the truncation radius (e-/s).
    r_sdss_mag : float
        Magnitude of that flux.
    sersic_index : float
        Sérsic n.
    r_eff_arcsec : float
        Circularised half-light radius ``sqrt(a b)`` (arcsec).
    axis_ratio : float
        ``b/a``.
    position_angle_deg : float
        Major axis, east of north (deg).
    truncation_r_eff : float
        The profile is zero beyond this many r_eff (circularised radius).
    """

    source_id: int | None
    ra: float
    dec: float
    flux_e_per_s: float
    r_sdss_mag: float
    sersic_index: float
    r_eff_arcsec: float
    axis_ratio: float
    position_angle_deg: float
    truncation_r_eff: float


@dataclass(frozen=True)
class VariableTruth:
    """Light curve of the variable star.

    ``flux = mean * (1 + semi_amplitude * sin(2 pi (mjd - spec.mjd0) / period + phase))``.

    Attributes
    ----------
    source_id : int
        Catalogue ``source_id``.
    period_days : float
        Period (days).
    semi_amplitude : float
        Relative semi-amplitude of the flux.
    phase_rad : float
        Phase at the first frame's nominal date ``spec.mjd0`` (rad).
    """

    source_id: int
    period_days: float
    semi_amplitude: float
    phase_rad: float


@dataclass(frozen=True)
class SimulationTruth:
    """Everything injected into a simulated data set.

    Attributes
    ----------
    spec : SimulationSpec
        The parameters used.
    zero_point : float
        Magnitude (r_sdss) of 1 e-/s above the atmosphere.
    photometric_band : str
        ``'r_sdss'``.
    ref_epoch : float
        Catalogue reference epoch (Julian year).
    roi_name : str
        Name of the ROI in the config.
    roi_ra, roi_dec : float
        ROI (lens galaxy) position (deg).
    roi_disk_radius_arcsec : float
        ``ROI_disk_radius_arcseconds`` written to the config.
    bad_column_x : int
        The bad column, the same in every frame (0-based x).
    frames : list of FrameTruth
        Per-frame truth, in time order.
    sources : list of SourceTruth
        Every catalogue source, in catalogue order.
    quasar_images : list of QuasarImageTruth
        The lensed images (not in the catalogue).
    lens_galaxy : SersicTruth
        The lens galaxy at the ROI (not in the catalogue).
    field_galaxy : SersicTruth
        The catalogued galaxy.
    variable_star : VariableTruth
        The variable star's light curve.
    isolated_star_source_id : int
        A bright (G 15.2-15.5) non-saturated star with no other source within 48 pixels, never hit by
        a cosmic ray or the bad column: a clean photometric reference.
    """

    spec: SimulationSpec
    zero_point: float
    photometric_band: str
    ref_epoch: float
    roi_name: str
    roi_ra: float
    roi_dec: float
    roi_disk_radius_arcsec: float
    bad_column_x: int
    frames: list[FrameTruth]
    sources: list[SourceTruth]
    quasar_images: list[QuasarImageTruth]
    lens_galaxy: SersicTruth
    field_galaxy: SersicTruth
    variable_star: VariableTruth
    isolated_star_source_id: int


# --------------------------------------------------------------------------------------------------
# PSF


@dataclass(frozen=True)
class _Psf:
    """Elliptical Moffat core plus a circular Gaussian wing; unit integral over the plane (pixels)."""

    alpha: float
    beta: float
    ellipticity: float
    theta: float  # major axis from +x towards +y, rad
    wing_fraction: float
    wing_sigma: float

    def density(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """PSF per pixel^2 at offsets ``u`` (x, shape ``(..., 1, n)``) and ``v`` (y, ``(..., m, 1)``)."""
        b = self.alpha * (1.0 - self.ellipticity)
        c, s = math.cos(self.theta), math.sin(self.theta)
        qa = c * c / self.alpha**2 + s * s / b**2
        qc = s * s / self.alpha**2 + c * c / b**2
        qb = 2.0 * s * c * (1.0 / self.alpha**2 - 1.0 / b**2)
        q = qb * v * u
        q += qa * u * u
        q += qc * v * v + 1.0
        np.log(q, out=q)
        q *= -self.beta
        np.exp(q, out=q)
        q *= (1.0 - self.wing_fraction) * (self.beta - 1.0) / (math.pi * self.alpha * b)
        two_s2 = 2.0 * self.wing_sigma**2
        q += (self.wing_fraction / (math.pi * two_s2)) * (np.exp(-u * u / two_s2) * np.exp(-v * v / two_s2))
        return q

    def peak(self) -> float:
        """PSF density at its centre (per pixel^2)."""
        b = self.alpha * (1.0 - self.ellipticity)
        moffat = (1.0 - self.wing_fraction) * (self.beta - 1.0) / (math.pi * self.alpha * b)
        return moffat + self.wing_fraction / (2.0 * math.pi * self.wing_sigma**2)

    def effective_fwhm(self) -> float:
        """Circular FWHM ``2 sqrt(A_half/pi)`` of the area above half the peak (pixels), on a fine grid."""
        extent = 2.0 * self.alpha * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0) + 1.0
        n = 801
        grid = np.linspace(-extent, extent, n)
        step = grid[1] - grid[0]
        above = self.density(grid[None, :], grid[:, None]) > 0.5 * self.peak()
        return 2.0 * math.sqrt(np.count_nonzero(above) * step**2 / math.pi)

    def stamp_half_size(self) -> int:
        """Smallest half-size whose stamp holds at least ``_CAPTURE_TARGET`` of the flux (a lower bound)."""
        radius = np.arange(1, 400) + 0.5  # circle inscribed in the stamp
        moffat_out = (1.0 + (radius / self.alpha) ** 2) ** (1.0 - self.beta)
        wing_out = np.exp(-(radius**2) / (2.0 * self.wing_sigma**2))
        outside = (1.0 - self.wing_fraction) * moffat_out + self.wing_fraction * wing_out
        return int(np.argmax(outside <= 1.0 - _CAPTURE_TARGET)) + 1


def _psf_from_frame(frame: FrameTruth) -> _Psf:
    """The PSF model of a frame from its truth record."""
    return _Psf(
        alpha=frame.moffat_alpha_pixels,
        beta=frame.moffat_beta,
        ellipticity=frame.ellipticity,
        theta=math.radians(frame.position_angle_deg),
        wing_fraction=frame.wing_fraction,
        wing_sigma=frame.wing_sigma_pixels,
    )


def _point_source_stamps(psf: _Psf, dx: np.ndarray, dy: np.ndarray, half: int) -> np.ndarray:
    """Pixel-integrated PSF stamps (``(n, 2h+1, 2h+1)``) for sub-pixel offsets ``dx, dy`` (pixels).

    Each pixel is integrated with an ``_OVERSAMPLING``^2 midpoint rule; the source sits at
    ``(half + dx, half + dy)`` in stamp coordinates.
    """
    k = _OVERSAMPLING
    size = 2 * half + 1
    offsets = (np.arange(size * k) + 0.5) / k - 0.5 - half
    u = offsets[None, None, :] - dx[:, None, None]
    v = offsets[None, :, None] - dy[:, None, None]
    fine = psf.density(u, v)
    return fine.reshape(len(dx), size, k, size, k).sum(axis=(2, 4)) / k**2


def psf_stamp(
    frame: FrameTruth, x_offset: float = 0.0, y_offset: float = 0.0, half_size: int | None = None
) -> np.ndarray:
    """True pixel-integrated PSF of a frame, exactly as injected for point sources.

    Parameters
    ----------
    frame : FrameTruth
        The frame.
    x_offset, y_offset : float
        Sub-pixel position of the source relative to the stamp's central pixel (pixels).
    half_size : int, optional
        Stamp half-size (pixels); defaults to the rendering stamp ``frame.psf_stamp_half_size``.

    Returns
    -------
    numpy.ndarray
        ``(2h+1, 2h+1)`` array of flux fractions per pixel (indexed ``[y, x]``); its sum is the
        captured fraction (``frame.psf_captured_fraction`` for a centred source and the default size).
    """
    half = frame.psf_stamp_half_size if half_size is None else half_size
    return _point_source_stamps(_psf_from_frame(frame), np.array([x_offset]), np.array([y_offset]), half)[0]


# --------------------------------------------------------------------------------------------------
# Rendering


def _add_stamps(image: np.ndarray, stamps: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> None:
    """Add stamps centred on integer pixels ``(ix, iy)`` to ``image``, clipped to its bounds."""
    ny, nx = image.shape
    half = stamps.shape[1] // 2
    for stamp, cx, cy in zip(stamps, ix, iy, strict=True):
        x0, x1 = max(cx - half, 0), min(cx + half + 1, nx)
        y0, y1 = max(cy - half, 0), min(cy + half + 1, ny)
        image[y0:y1, x0:x1] += stamp[y0 - cy + half : y1 - cy + half, x0 - cx + half : x1 - cx + half]


def _render_point_sources(
    image: np.ndarray, psf: _Psf, half: int, x: np.ndarray, y: np.ndarray, flux: np.ndarray
) -> None:
    """Add point sources of ``flux`` (image units) at pixel positions ``x, y`` to ``image``."""
    ny, nx = image.shape
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    visible = (ix + half >= 0) & (ix - half < nx) & (iy + half >= 0) & (iy - half < ny)
    ix, iy, dx, dy, flux = ix[visible], iy[visible], (x - ix)[visible], (y - iy)[visible], flux[visible]
    chunk = max(1, 4_000_000 // ((2 * half + 1) * _OVERSAMPLING) ** 2)
    for start in range(0, len(ix), chunk):
        part = slice(start, start + chunk)
        stamps = _point_source_stamps(psf, dx[part], dy[part], half) * flux[part, None, None]
        _add_stamps(image, stamps, ix[part], iy[part])


def _sersic_fine_grid(galaxy: SersicTruth, cd: np.ndarray, dx: float, dy: float, half: int) -> np.ndarray:
    """Sérsic profile on the oversampled grid of a ``(2h+1)^2`` pixel stamp, normalised to its flux."""
    k = _OVERSAMPLING
    offsets = (np.arange((2 * half + 1) * k) + 0.5) / k - 0.5 - half
    u = offsets[None, :] - dx
    v = offsets[:, None] - dy
    east = (cd[0, 0] * u + cd[0, 1] * v) * 3600.0  # intermediate world coordinate xi points east
    north = (cd[1, 0] * u + cd[1, 1] * v) * 3600.0
    pa = math.radians(galaxy.position_angle_deg)
    major = east * math.sin(pa) + north * math.cos(pa)
    minor = east * math.cos(pa) - north * math.sin(pa)
    q = galaxy.axis_ratio
    radius = np.sqrt(q * major**2 + minor**2 / q) / galaxy.r_eff_arcsec
    n = galaxy.sersic_index
    profile = np.exp(-gammaincinv(2.0 * n, 0.5) * (radius ** (1.0 / n) - 1.0))
    profile[radius > galaxy.truncation_r_eff] = 0.0
    return profile * (galaxy.flux_e_per_s / profile.sum())


def _render_sersic(
    image: np.ndarray,
    psf: _Psf,
    psf_half: int,
    galaxy: SersicTruth,
    x: float,
    y: float,
    cd: np.ndarray,
    scale: float,
) -> None:
    """Add a Sérsic galaxy at pixel ``(x, y)``, convolved with the PSF on the oversampled grid."""
    k = _OVERSAMPLING
    extent = galaxy.truncation_r_eff * galaxy.r_eff_arcsec / math.sqrt(galaxy.axis_ratio) / scale
    half = math.ceil(extent) + psf_half + 1
    ix, iy = round(x), round(y)
    fine = _sersic_fine_grid(galaxy, cd, x - ix, y - iy, half)
    kernel_offsets = np.arange(-psf_half * k - k // 2, psf_half * k + k // 2 + 1) / k
    kernel = psf.density(kernel_offsets[None, :], kernel_offsets[:, None]) / k**2
    blurred = fftconvolve(fine, kernel, mode="same")
    size = 2 * half + 1
    stamp = blurred.reshape(size, k, size, k).sum(axis=(1, 3))
    _add_stamps(image, stamp[None], np.array([ix]), np.array([iy]))


# --------------------------------------------------------------------------------------------------
# Geometry and catalogue


def _wcs_header(
    crval: tuple[float, float], crpix: tuple[float, float], scale: float, rotation_deg: float
) -> dict[str, str | int | float]:
    """TAN WCS keywords: north up, east left, rotated by ``rotation_deg`` (CRPIX 1-based)."""
    s = scale / 3600.0
    c, sn = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    return {
        "WCSAXES": 2,
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CRVAL1": float(crval[0]),
        "CRVAL2": float(crval[1]),
        "CRPIX1": float(crpix[0]),
        "CRPIX2": float(crpix[1]),
        "CD1_1": -s * c,
        "CD1_2": s * sn,
        "CD2_1": s * sn,
        "CD2_2": s * c,
        "RADESYS": "ICRS",
    }


def _wcs(header: dict[str, str | int | float]) -> WCS:
    """An astropy WCS from WCS keywords."""
    return WCS(fits.Header(header))


def _cd_matrix(header: dict[str, str | int | float]) -> np.ndarray:
    """The CD matrix (deg/pixel) of WCS keywords."""
    return np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]], dtype=float)


def _years_since_ref_epoch(mjd: float | np.ndarray) -> float | np.ndarray:
    """Julian years from the catalogue reference epoch J2016.0."""
    return (np.asarray(mjd) - _J2016_MJD) / 365.25


def _propagate(
    ra: np.ndarray, dec: np.ndarray, pmra: np.ndarray, pmdec: np.ndarray, years: float
) -> tuple[np.ndarray, np.ndarray]:
    """Move positions (deg) by proper motions (mas/yr) over ``years`` (linear in RA cos Dec, Dec)."""
    dec_new = dec + pmdec * years / _MAS_PER_DEG
    ra_new = ra + pmra * years / _MAS_PER_DEG / np.cos(np.radians(dec))
    return ra_new, dec_new


def _flux_from_mag(mag: np.ndarray | float, zero_point: float) -> np.ndarray:
    """Flux in e-/s from an r_sdss magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag) - zero_point))


@dataclass(frozen=True)
class _Layout:
    """Pixel layout of the reference pointing (no jitter, no rotation); all values in pixels."""

    nx: int
    ny: int
    roi: tuple[float, float]
    interior_margin: float
    disk_radius: float
    roi_exclusion: float

    def interior(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where a position stays well inside every frame."""
        m = self.interior_margin
        return (x >= m) & (x <= self.nx - 1 - m) & (y >= m) & (y <= self.ny - 1 - m)

    def roi_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance to the ROI."""
        return np.hypot(x - self.roi[0], y - self.roi[1])


def _layout(spec: SimulationSpec) -> _Layout:
    """Reference-pointing layout of a spec."""
    centre = ((spec.nx - 1) / 2.0, (spec.ny - 1) / 2.0)
    roi = (centre[0] + _ROI_OFFSET_FRACTION[0] * spec.nx, centre[1] + _ROI_OFFSET_FRACTION[1] * spec.ny)
    rotation_shift = math.radians(spec.max_rotation_deg) * math.hypot(*centre)
    return _Layout(
        nx=spec.nx,
        ny=spec.ny,
        roi=roi,
        interior_margin=spec.max_jitter_pixels + rotation_shift + _ISOLATION_PIXELS,
        disk_radius=_DISK_RADIUS_FRACTION * min(spec.nx, spec.ny),
        roi_exclusion=_ROI_EXCLUSION_ARCSEC / spec.pixel_scale,
    )


def _candidates(
    rng: np.random.Generator, layout: _Layout, avoid: list[tuple[float, float, float]], in_disk: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Random positions inside every frame, away from the ROI and outside the ``(x, y, radius)`` discs."""
    x = rng.uniform(0, layout.nx - 1, 256)
    y = rng.uniform(0, layout.ny - 1, 256)
    ok = layout.interior(x, y) & (layout.roi_distance(x, y) >= layout.roi_exclusion)
    if in_disk:
        ok &= layout.roi_distance(x, y) <= layout.disk_radius
    for ax, ay, radius in avoid:
        ok &= np.hypot(x - ax, y - ay) >= radius
    return x[ok], y[ok]


def _place_far(
    rng: np.random.Generator, layout: _Layout, avoid: list[tuple[float, float, float]]
) -> tuple[float, float]:
    """The candidate farthest from the ROI and from the centres of ``avoid``."""
    x, y = _candidates(rng, layout, avoid, in_disk=False)
    score = layout.roi_distance(x, y)
    for ax, ay, _ in avoid:
        score = np.minimum(score, np.hypot(x - ax, y - ay))
    if not x.size:
        raise ValueError(f"frame {layout.nx}x{layout.ny} is too small to place the isolated sources")
    i = int(np.argmax(score))
    return float(x[i]), float(y[i])


def _place_in_disk(
    rng: np.random.Generator, layout: _Layout, avoid: list[tuple[float, float, float]]
) -> tuple[float, float]:
    """A random position inside the ROI disk and every frame, away from the ROI and ``avoid``."""
    for _ in range(200):
        x, y = _candidates(rng, layout, avoid, in_disk=True)
        if x.size:
            return float(x[0]), float(y[0])
    raise ValueError(f"frame {layout.nx}x{layout.ny} is too small to place the isolated sources")


@dataclass(frozen=True)
class _Catalog:
    """Catalogue columns (Gaia DR3 names) plus kinds; positions at the reference epoch."""

    source_id: np.ndarray
    kind: list[str]
    ra: np.ndarray
    dec: np.ndarray
    pmra: np.ndarray
    pmdec: np.ndarray
    parallax: np.ndarray
    g: np.ndarray
    bp: np.ndarray
    rp: np.ndarray
    flux_over_error: np.ndarray
    excess_noise: np.ndarray
    excess_noise_sig: np.ndarray
    ruwe: np.ndarray


def _field_star_gmags(rng: np.random.Generator, n: int) -> np.ndarray:
    """G magnitudes with differential counts rising as ``10**(slope G)`` over the field range."""
    lo, hi = (10.0 ** (_FIELD_COUNT_SLOPE * m) for m in _FIELD_GMAG)
    return np.log10(lo + rng.uniform(size=n) * (hi - lo)) / _FIELD_COUNT_SLOPE


def _star_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """BP-RP colours: mostly turn-off stars around 0.9, a third of red dwarfs."""
    blue = np.clip(rng.normal(0.9, 0.2, n), 0.4, 1.6)
    red = rng.uniform(1.6, 2.7, n)
    return np.where(rng.uniform(size=n) < 0.7, blue, red)


def _positions(
    spec: SimulationSpec, layout: _Layout, rng: np.random.Generator
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Kinds, G magnitudes and reference-pointing pixel positions (at the series mid-epoch).

    Order (see the ``_I_*`` indices): the saturated star and the isolated bright star (far from the
    ROI and from each other), the galaxy, the variable, three high proper-motion stars and the usable
    stars (isolated, inside the ROI disk), then the random field.
    """
    saturated = _place_far(rng, layout, [])
    isolated = _place_far(rng, layout, [(*saturated, 2 * _BRIGHT_ISOLATION_PIXELS)])
    avoid = [(*saturated, _SATURATED_ISOLATION_PIXELS), (*isolated, _BRIGHT_ISOLATION_PIXELS)]
    for _ in range(len(_I_HIGH_PM) + 2 + spec.min_usable_stars):
        avoid.append((*_place_in_disk(rng, layout, avoid), _ISOLATION_PIXELS))
    fixed = np.array([(ax, ay) for ax, ay, _ in avoid])
    radius = np.array([r for _, _, r in avoid])
    kinds = ["saturated", "star", "galaxy", "variable"] + ["star"] * (len(fixed) - 4)
    usable = (
        _USABLE_GMAG[0]
        + (_USABLE_GMAG[1] - _USABLE_GMAG[0])
        * (np.arange(spec.min_usable_stars) + rng.uniform(size=spec.min_usable_stars))
        / spec.min_usable_stars
    )
    gmags = [
        12.0,
        rng.uniform(15.2, 15.5),
        rng.uniform(18.0, 18.6),
        rng.uniform(17.0, 17.5),
        *rng.uniform(16.5, 18.0, len(_I_HIGH_PM)),
        *usable,
    ]

    pad = spec.max_jitter_pixels + 10.0
    area_arcmin2 = (spec.nx + 2 * pad) * (spec.ny + 2 * pad) * (spec.pixel_scale / 60.0) ** 2
    n_field = round(spec.star_density * area_arcmin2)
    x = rng.uniform(-pad, spec.nx - 1 + pad, 4 * n_field)
    y = rng.uniform(-pad, spec.ny - 1 + pad, 4 * n_field)
    distance = np.hypot(x[:, None] - fixed[None, :, 0], y[:, None] - fixed[None, :, 1])
    keep = np.all(distance >= radius, axis=1) & (layout.roi_distance(x, y) >= layout.roi_exclusion)
    x, y = x[keep][:n_field], y[keep][:n_field]
    kinds += ["star"] * len(x)
    all_g = np.concatenate([np.array(gmags), _field_star_gmags(rng, len(x))])
    return kinds, all_g, np.concatenate([fixed[:, 0], x]), np.concatenate([fixed[:, 1], y])


def _build_catalog(
    spec: SimulationSpec, layout: _Layout, base_wcs: WCS, mid_mjd: float, rng: np.random.Generator
) -> _Catalog:
    """The Gaia-like catalogue of the field (noise-free magnitudes)."""
    kinds, g, x, y = _positions(spec, layout, rng)
    n = len(kinds)
    colour = _star_colours(rng, n)
    pmra, pmdec = rng.normal(0.0, 5.0, n), rng.normal(0.0, 5.0, n)
    parallax = rng.uniform(0.05, 1.5, n)
    high_pm = list(_I_HIGH_PM)
    pm_total = np.array([rng.uniform(200.0, 300.0), rng.uniform(100.0, 200.0), rng.uniform(50.0, 100.0)])
    pm_angle = rng.uniform(0.0, 2.0 * math.pi, 3)
    pmra[high_pm], pmdec[high_pm] = pm_total * np.sin(pm_angle), pm_total * np.cos(pm_angle)
    parallax[high_pm] = rng.uniform(5.0, 20.0, 3)
    colour[high_pm] = rng.uniform(1.8, 2.6, 3)
    colour[_I_GALAXY], pmra[_I_GALAXY], pmdec[_I_GALAXY] = 1.3, 0.4, -0.7
    colour[_I_VARIABLE], colour[_I_SATURATED], colour[_I_ISOLATED] = 0.95, 0.8, 0.9
    rp = g - (0.05 + 0.55 * colour)
    bp = rp + colour

    ra_mid, dec_mid = base_wcs.pixel_to_world_values(x, y)
    ra, dec = _propagate(ra_mid, dec_mid, pmra, pmdec, -float(_years_since_ref_epoch(mid_mjd)))
    sigma_g = 0.0003 + 0.006 * 10.0 ** (0.4 * (g - 20.0))
    excess_noise = rng.uniform(0.0, 0.3, n)
    excess_noise_sig = rng.uniform(0.0, 1.5, n)
    ruwe = np.clip(rng.normal(1.0, 0.05, n), 0.8, 1.3)
    excess_noise[_I_GALAXY], excess_noise_sig[_I_GALAXY], ruwe[_I_GALAXY] = 4.5, 35.0, 2.6
    source_id = rng.choice(9 * 10**17, size=n, replace=False) + 10**17
    return _Catalog(
        source_id=source_id,
        kind=kinds,
        ra=ra,
        dec=dec,
        pmra=pmra,
        pmdec=pmdec,
        parallax=parallax,
        g=g,
        bp=bp,
        rp=rp,
        flux_over_error=1.0 / (0.4 * math.log(10) * sigma_g),
        excess_noise=excess_noise,
        excess_noise_sig=excess_noise_sig,
        ruwe=ruwe,
    )


# --------------------------------------------------------------------------------------------------
# Observing conditions and light curves


@dataclass(frozen=True)
class _Conditions:
    """Observing conditions of one frame."""

    mjd: float
    transparency: float
    sky: float
    sky_gradient: tuple[float, float]
    psf: _Psf
    moffat_fwhm: float
    jitter: tuple[float, float]
    rotation_deg: float
    bad_column_offset: float


def _draw_psf(rng: np.random.Generator, fwhm: float, spec: "SimulationSpec") -> _Psf:
    """A random PSF whose Moffat core has circular-equivalent FWHM ``fwhm`` (pixels)."""
    beta = rng.uniform(*spec.moffat_beta_range)
    ellipticity = rng.uniform(0.0, 0.15)
    alpha = fwhm / (2.0 * math.sqrt((1.0 - ellipticity) * (2.0 ** (1.0 / beta) - 1.0)))
    return _Psf(
        alpha=alpha,
        beta=beta,
        ellipticity=ellipticity,
        theta=rng.uniform(0.0, math.pi),
        wing_fraction=rng.uniform(*spec.wing_fraction_range),
        wing_sigma=rng.uniform(2.0, 3.0) * fwhm / 2.3548,
    )


def _draw_conditions(spec: SimulationSpec, index: int, rng: np.random.Generator) -> _Conditions:
    """Random conditions of frame ``index``."""
    fwhm = rng.uniform(*spec.seeing_range) / spec.pixel_scale
    psf = _draw_psf(rng, fwhm, spec)
    sky = rng.uniform(*spec.sky_range)
    gradient_angle = rng.uniform(0.0, 2.0 * math.pi)
    gradient = sky * rng.uniform(0.02, 0.05) / max(spec.nx, spec.ny)
    return _Conditions(
        mjd=spec.mjd0 + index * spec.cadence_days + rng.uniform(-0.02, 0.02),
        transparency=rng.uniform(0.7, 1.0),
        sky=sky,
        sky_gradient=(gradient * math.cos(gradient_angle), gradient * math.sin(gradient_angle)),
        psf=psf,
        moffat_fwhm=fwhm,
        jitter=(rng.uniform(-1, 1) * spec.max_jitter_pixels, rng.uniform(-1, 1) * spec.max_jitter_pixels),
        rotation_deg=rng.uniform(-1, 1) * spec.max_rotation_deg,
        bad_column_offset=rng.uniform(1000.0, 3000.0),
    )


def _smooth_curve(
    rng: np.random.Generator, t: np.ndarray, span: float, periods: tuple[float, float], amplitude: float
) -> np.ndarray:
    """Zero-mean sum of three random sinusoids, periods in units of ``span``, peak-to-peak ``amplitude``."""
    period = rng.uniform(*periods, 3) * span
    phase = rng.uniform(0.0, 2.0 * math.pi, 3)
    weight = rng.uniform(0.3, 1.0, 3)
    curve = np.sum(
        weight[:, None] * np.sin(2.0 * math.pi * t[None, :] / period[:, None] + phase[:, None]), axis=0
    )
    curve -= curve.mean()
    return curve * (amplitude / np.ptp(curve)) if np.ptp(curve) > 0 else curve


def _quasar_images(
    spec: SimulationSpec, mjds: np.ndarray, rng: np.random.Generator
) -> list[QuasarImageTruth]:
    """Quasar image positions and light curves; pixel positions are left empty."""
    indices = _QUASAR_IMAGE_SUBSETS[spec.n_quasar_images]
    delays = np.array([_QUASAR_DELAYS_DAYS[i] for i in indices])
    t = mjds - spec.mjd0
    span = max(float(np.ptp(t) + delays.max()), 5.0)
    delayed = np.concatenate([t - d for d in delays])
    intrinsic = _smooth_curve(rng, delayed, span, (0.6, 1.5), rng.uniform(0.25, 0.35))
    intrinsic = intrinsic.reshape(len(delays), -1)
    cos_dec = math.cos(math.radians(spec.dec0))
    images = []
    for n, i in enumerate(indices):
        micro = rng.uniform(-0.04, 0.04) * (t - t.mean()) / span
        micro += _smooth_curve(rng, t, span, (0.5, 1.5), rng.uniform(0.01, 0.03))
        mag = _QUASAR_A_MAG + _QUASAR_MAG_OFFSETS[i] + intrinsic[n] + micro
        east, north = _QUASAR_OFFSETS_ARCSEC[i]
        images.append(
            QuasarImageTruth(
                label="ABCD"[n],
                ra=spec.ra0 + east / 3600.0 / cos_dec,
                dec=spec.dec0 + north / 3600.0,
                offset_arcsec=[east, north],
                delay_days=float(delays[n]),
                magnification_mag=_QUASAR_MAG_OFFSETS[i],
                mag_per_frame=mag.tolist(),
                flux_e_per_s_per_frame=_flux_from_mag(mag, spec.zero_point).tolist(),
                intrinsic_mag_per_frame=intrinsic[n].tolist(),
                microlensing_mag_per_frame=micro.tolist(),
                x_pixels=[],
                y_pixels=[],
            )
        )
    return images


# --------------------------------------------------------------------------------------------------
# Detector effects


def _cosmic_ray_hit(rng: np.random.Generator, x0: int, y0: int) -> np.ndarray:
    """Pixels ``(k, 2)`` of one hit starting at ``(x0, y0)``: a 1-4 pixel track or a 2x2 blob."""
    if rng.uniform() < 0.25:
        return np.array([[x0, y0], [x0 + 1, y0], [x0, y0 + 1], [x0 + 1, y0 + 1]])
    step = np.array([[1, 0], [0, 1], [1, 1], [1, -1]])[rng.integers(4)]
    return np.array([x0, y0]) + np.arange(rng.integers(1, 5))[:, None] * step


def _cosmic_rays(
    rng: np.random.Generator,
    shape: tuple[int, int],
    avoid: list[tuple[float, float, float]],
    near: tuple[float, float] | None,
) -> np.ndarray:
    """Unique cosmic-ray pixels ``(k, 2)`` as ``[x, y]``, avoiding discs ``(x, y, radius)``.

    One extra hit starts 3-5 pixels from ``near`` when given.
    """
    ny, nx = shape
    n_hits = max(3, round(_CR_PER_4MPIX * nx * ny / 2048**2))
    hits = []
    if near is not None:
        angle, radius = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(3.0, 5.0)
        hits.append(
            _cosmic_ray_hit(
                rng, round(near[0] + radius * math.cos(angle)), round(near[1] + radius * math.sin(angle))
            )
        )
    while len(hits) < n_hits + (near is not None):
        hit = _cosmic_ray_hit(rng, int(rng.integers(2, nx - 3)), int(rng.integers(2, ny - 3)))
        if all(np.hypot(hit[:, 0] - ax, hit[:, 1] - ay).min() > r for ax, ay, r in avoid):
            hits.append(hit)
    pixels = np.unique(np.concatenate(hits), axis=0)
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < nx) & (pixels[:, 1] >= 0) & (pixels[:, 1] < ny)
    return pixels[inside]


def _sky_model(spec: SimulationSpec, cond: _Conditions) -> np.ndarray:
    """Sky (e-/s/pixel): mean level plus a linear gradient about the frame centre (zero mean)."""
    x = np.arange(spec.nx) - (spec.nx - 1) / 2.0
    y = np.arange(spec.ny) - (spec.ny - 1) / 2.0
    return cond.sky + cond.sky_gradient[0] * x[None, :] + cond.sky_gradient[1] * y[:, None]


def _expose(spec: SimulationSpec, model: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson photons and Gaussian read noise of a model in e-/s; returns ADU."""
    electrons = rng.poisson(model * spec.exptime).astype(np.float64)
    electrons += rng.normal(0.0, spec.read_noise, model.shape)
    return electrons / spec.gain


# --------------------------------------------------------------------------------------------------
# Output files


_CATALOG_COLUMNS = (*CATALOG_COLUMNS, "ruwe")
"""Columns of the simulated catalogue: the Gaia DR3 columns the pipeline reads, plus RUWE."""


def _write_catalog(path: Path, cat: _Catalog) -> None:
    """Write the catalogue as CSV with Gaia DR3 column names, sorted by source_id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {
        "source_id": cat.source_id,
        "ra": cat.ra,
        "dec": cat.dec,
        "ref_epoch": np.full(len(cat.ra), GAIA_REF_EPOCH),
        "pmra": cat.pmra,
        "pmdec": cat.pmdec,
        "parallax": cat.parallax,
        "phot_g_mean_mag": cat.g,
        "phot_bp_mean_mag": cat.bp,
        "phot_rp_mean_mag": cat.rp,
        "phot_g_mean_flux_over_error": cat.flux_over_error,
        "astrometric_excess_noise": cat.excess_noise,
        "astrometric_excess_noise_sig": cat.excess_noise_sig,
        "ruwe": cat.ruwe,
    }
    lines = [",".join(_CATALOG_COLUMNS)]
    for i in np.argsort(cat.source_id):
        cells = [str(int(cat.source_id[i]))]
        cells += [repr(float(values[name][i])) for name in _CATALOG_COLUMNS if name != "source_id"]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


_HEADER_PARSER = '''"""Header parser of the simulated data set (written by lightcurver_ops.simulate)."""


def parse_header(header):
    """Return lightcurver's frame metadata: MJD (UTC), gain (e-/ADU), exposure time (s), filter."""
    return {
        "mjd": float(header["MJD-OBS"]),
        "gain": float(header["GAIN"]),
        "exptime": float(header["EXPTIME"]),
        "filter": str(header["FILTER"]).strip(),
    }
'''


def _stamp_size(arcsec: float, scale: float) -> int:
    """An even stamp size (pixels) spanning about ``arcsec``."""
    return 2 * round(arcsec / scale / 2.0)


def _config(
    spec: SimulationSpec, out_dir: Path, disk_radius_arcsec: float, quasars: list[QuasarImageTruth]
) -> dict[str, object]:
    """The lightcurver config, keys in the order of the template (spec §8) plus two extensions."""
    return {
        "workdir": str(out_dir),
        "raw_dirs": [str(out_dir / RAW_DIR)],
        "files_match_pattern": "*.fits",
        "hdu_data_index": 0,
        "hdu_header_indexes": [0],
        "trim_vertical": 0,
        "trim_horizontal": 0,
        "multiprocessing_cpu_count": 2,
        "ROI": {ROI_NAME: {"coordinates": [spec.ra0, spec.dec0]}},
        "ROI_size": 5.0,
        "telescope": dict(_TELESCOPE),
        "do_background_subtraction": True,
        "mask_sources_before_background": False,
        "background_estimation_n_boxes": 3,
        "source_extraction_threshold": 2.0,
        "source_extraction_min_area": 20,
        "source_extraction_do_plots": 1,
        "plate_solve_frames": "all_never_attempted",
        "already_plate_solved": 1 if spec.with_wcs else 0,
        "plate_solving_strategy": "plate_solve",
        "reference_frame_for_wcs": None,
        "plate_scale_interval": [round(0.95 * spec.pixel_scale, 4), round(1.05 * spec.pixel_scale, 4)],
        "alternate_plate_solve_gaia_radius": 180,
        "astrometry_net_api_key": None,
        "max_pixel_anisotropy": 0.02,
        "plate_solving_min_success_fraction": 0.85,
        "star_selection_strategy": "ROI_disk",
        "ROI_disk_radius_arcseconds": disk_radius_arcsec,
        "star_min_gmag": _USABLE_GMAG[0],
        "star_max_gmag": _USABLE_GMAG[1],
        "star_max_astrometric_excess_noise": 3.0,
        "min_phot_g_mean_flux_over_error": 100.0,
        "min_number_stars": 6,
        "gaia_query_redo": False,
        "gaia_provider": "file",
        "gaia_catalog_file": CATALOG_FILE,
        "stars_to_use_psf": None,
        "stars_to_use_norm": None,
        "stars_to_exclude_psf": None,
        "stars_to_exclude_norm": None,
        "stamp_size_stars": _stamp_size(5.2, spec.pixel_scale),
        "stamp_size_ROI": _stamp_size(7.0, spec.pixel_scale),
        "redo_stamp_extraction": False,
        "mask_bad_rows_and_columns": True,
        "clean_cosmics": True,
        "cosmics_masking_params": {"sigclip": 4.5, "sigfrac": 0.3, "objlim": 5.0},
        "redo_psf": False,
        "subsampling_factor": 2,
        "field_distortion": False,
        "psf_n_iter_analytic": 100,
        "psf_n_iter_pixels": 3000,
        "psf_fit_exclude_strategy": {"sigma_clip": 4},
        "redo_star_photometry": False,
        "star_deconv_n_iter": 2000,
        "star_photometry_uniform_background_per_epoch": False,
        "star_photometry_starlet_global_background": False,
        "fluxes_fit_exclude_strategy": {"sigma_clip": 3.0},
        "constraints_on_frame_columns_for_roi": {"seeing_arcseconds": [0.0, 3.0]},
        "constraints_on_normalization_coeff": {"coefficient": [0.1, 10.0]},
        "prepared_roi_cutouts_path": None,
        "photometric_band": PHOTOMETRIC_BAND,
        "do_ROI_model": True,
        "point_sources": {q.label: [q.ra, q.dec] for q in quasars},
        "fix_point_source_astrometry": False,
        "starting_background": None,
        "further_optimize_background": True,
        "roi_model_regularization": {
            "regularization_strength_scales": 1.0,
            "regularization_strength_hf": 1.0,
            "regularization_strength_positivity": 100.0,
            "regularization_strength_pts_source": 0.01,
            "regularization_scatter_fluxes_pre_optim": 1.0,
            "regularization_scatter_fluxes_main_optim": 0.0,
        },
        "roi_deconv_translations_iters": 300,
        "roi_deconv_all_iters": 2000,
    }


def _frame_header(spec: SimulationSpec, frame: FrameTruth) -> fits.Header:
    """FITS header of a raw frame: metadata keys and, when ``spec.with_wcs``, the true WCS."""
    header = fits.Header()
    header["OBJECT"] = (ROI_NAME, "target")
    header["FILTER"] = ("r", "filter")
    header["EXPTIME"] = (spec.exptime, "[s] exposure time")
    header["GAIN"] = (spec.gain, "[e-/ADU] detector gain")
    header["RDNOISE"] = (spec.read_noise, "[e-] read noise")
    header["SATURATE"] = (spec.saturation_adu, "[ADU] saturation level")
    header["DATE-OBS"] = (frame.date_obs, "UTC start of exposure")
    header["MJD-OBS"] = (frame.mjd, "[d] MJD (UTC) start of exposure")
    header["BUNIT"] = ("ADU", "pixel unit")
    header["TELESCOP"] = _TELESCOPE["name"]
    header["INSTRUME"] = _TELESCOPE["imager_name"]
    if spec.with_wcs:
        header.update(frame.wcs_header)
    return header


# --------------------------------------------------------------------------------------------------
# Orchestration


def _validate(spec: SimulationSpec) -> None:
    """Reject specs the simulator cannot honour."""
    if spec.n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {spec.n_frames}")
    if spec.n_quasar_images not in _QUASAR_IMAGE_SUBSETS:
        raise ValueError(f"n_quasar_images must be 2, 3 or 4, got {spec.n_quasar_images}")
    if min(spec.nx, spec.ny) < 256:
        raise ValueError(f"frames must be at least 256x256 pixels, got {spec.nx}x{spec.ny}")


def _frame_truth(
    spec: SimulationSpec,
    index: int,
    cond: _Conditions,
    header: dict[str, str | int | float],
    roi_pixel: tuple[float, float],
    cosmic_pixels: np.ndarray,
    near_star: int | None,
    bad_column: int,
    quasars: list[QuasarImageTruth],
) -> FrameTruth:
    """Assemble a frame's truth record."""
    psf = cond.psf
    half = psf.stamp_half_size()
    fwhm = psf.effective_fwhm()
    return FrameTruth(
        index=index,
        file_name=f"frame_{index + 1:04d}.fits",
        mjd=float(cond.mjd),
        date_obs=Time(cond.mjd, format="mjd", scale="utc").isot,
        transparency=float(cond.transparency),
        zero_point=spec.zero_point + 2.5 * math.log10(cond.transparency),
        seeing_fwhm_pixels=fwhm,
        seeing_fwhm_arcsec=fwhm * spec.pixel_scale,
        moffat_fwhm_pixels=float(cond.moffat_fwhm),
        moffat_alpha_pixels=psf.alpha,
        moffat_beta=psf.beta,
        ellipticity=psf.ellipticity,
        position_angle_deg=math.degrees(psf.theta),
        wing_fraction=psf.wing_fraction,
        wing_sigma_pixels=psf.wing_sigma,
        psf_stamp_half_size=half,
        psf_captured_fraction=float(_point_source_stamps(psf, np.zeros(1), np.zeros(1), half).sum()),
        sky_level_e_per_s=float(cond.sky),
        sky_gradient_e_per_s_per_pixel=[float(g) for g in cond.sky_gradient],
        pointing_offset_pixels=[float(j) for j in cond.jitter],
        rotation_deg=float(cond.rotation_deg),
        wcs_header=header,
        roi_pixel=[float(roi_pixel[0]), float(roi_pixel[1])],
        cosmic_ray_pixels=[[int(px), int(py)] for px, py in cosmic_pixels],
        cosmic_ray_near_star_source_id=near_star,
        bad_column_x=bad_column,
        quasar_fluxes_e_per_s={q.label: q.flux_e_per_s_per_frame[index] for q in quasars},
    )


@dataclass(frozen=True)
class _Scene:
    """Everything that is the same in all frames."""

    spec: SimulationSpec
    layout: _Layout
    base_wcs: WCS
    cat: _Catalog
    r_mag: np.ndarray
    flux_per_frame: np.ndarray  # (n_sources, n_frames), e-/s above the atmosphere
    quasars: list[QuasarImageTruth]
    lens: SersicTruth
    field_galaxy: SersicTruth
    variable: VariableTruth
    bad_column: int


def _bad_column(spec: SimulationSpec, layout: _Layout, isolated_x: float, rng: np.random.Generator) -> int:
    """A column inside every frame that never crosses the ROI or the isolated bright star."""
    columns = np.arange(math.ceil(layout.interior_margin), math.floor(spec.nx - 1 - layout.interior_margin))
    clearance = spec.max_jitter_pixels + 20.0
    ok = (np.abs(columns - layout.roi[0]) > clearance) & (np.abs(columns - isolated_x) > clearance)
    if not ok.any():
        raise ValueError(f"frame {spec.nx}x{spec.ny} is too small to place the bad column")
    return int(rng.choice(columns[ok]))


def _build_scene(
    spec: SimulationSpec, conditions: list[_Conditions], seeds: list[np.random.SeedSequence]
) -> _Scene:
    """Catalogue, quasar, galaxies, variable star and bad column."""
    layout = _layout(spec)
    centre = ((spec.nx + 1) / 2.0, (spec.ny + 1) / 2.0)
    roi_crpix = (layout.roi[0] + 1, layout.roi[1] + 1)
    roi_header = _wcs_header((spec.ra0, spec.dec0), roi_crpix, spec.pixel_scale, 0.0)
    base_crval = _wcs(roi_header).pixel_to_world_values(centre[0] - 1, centre[1] - 1)
    base_wcs = _wcs(_wcs_header(base_crval, centre, spec.pixel_scale, 0.0))
    mjds = np.array([c.mjd for c in conditions])
    field_rng, quasar_rng, detector_rng = (np.random.default_rng(s) for s in seeds)
    cat = _build_catalog(spec, layout, base_wcs, float(mjds.mean()), field_rng)
    # BP-RP of the simulated stars is 0.4-2.7, inside the r_sdss polynomial's range: no NaN
    r_mag, _ = gaia_band_magnitudes(cat.g, cat.bp, cat.rp, PHOTOMETRIC_BAND)
    mean_flux = _flux_from_mag(r_mag, spec.zero_point)
    quasars = _quasar_images(spec, mjds, quasar_rng)
    lens = SersicTruth(
        source_id=None,
        ra=spec.ra0,
        dec=spec.dec0,
        flux_e_per_s=float(_flux_from_mag(19.6, spec.zero_point)),
        r_sdss_mag=19.6,
        sersic_index=4.0,
        r_eff_arcsec=0.6,
        axis_ratio=0.8,
        position_angle_deg=float(quasar_rng.uniform(0.0, 180.0)),
        truncation_r_eff=8.0,
    )
    field_galaxy = SersicTruth(
        source_id=int(cat.source_id[_I_GALAXY]),
        ra=float(cat.ra[_I_GALAXY]),
        dec=float(cat.dec[_I_GALAXY]),
        flux_e_per_s=float(mean_flux[_I_GALAXY]),
        r_sdss_mag=float(r_mag[_I_GALAXY]),
        sersic_index=1.5,
        r_eff_arcsec=0.9,
        axis_ratio=float(field_rng.uniform(0.5, 0.7)),
        position_angle_deg=float(field_rng.uniform(0.0, 180.0)),
        truncation_r_eff=8.0,
    )
    variable = VariableTruth(
        source_id=int(cat.source_id[_I_VARIABLE]),
        period_days=float(field_rng.uniform(2.0, 6.0)),
        semi_amplitude=float(field_rng.uniform(0.07, 0.10)),
        phase_rad=float(field_rng.uniform(0.0, 2.0 * math.pi)),
    )
    flux_per_frame = np.repeat(mean_flux[:, None], spec.n_frames, axis=1)
    flux_per_frame[_I_VARIABLE] *= 1.0 + variable.semi_amplitude * np.sin(
        2.0 * math.pi * (mjds - spec.mjd0) / variable.period_days + variable.phase_rad
    )
    isolated_x, _ = base_wcs.world_to_pixel_values(cat.ra[_I_ISOLATED], cat.dec[_I_ISOLATED])
    bad_column = _bad_column(spec, layout, float(isolated_x), detector_rng)
    return _Scene(
        spec=spec,
        layout=layout,
        base_wcs=base_wcs,
        cat=cat,
        r_mag=r_mag,
        flux_per_frame=flux_per_frame,
        quasars=quasars,
        lens=lens,
        field_galaxy=field_galaxy,
        variable=variable,
        bad_column=bad_column,
    )


def _frame_wcs_header(scene: _Scene, cond: _Conditions) -> dict[str, str | int | float]:
    """True WCS of a frame: the reference pointing moved by the jitter and rotated."""
    spec = scene.spec
    centre = ((spec.nx + 1) / 2.0, (spec.ny + 1) / 2.0)
    crval = scene.base_wcs.pixel_to_world_values(
        centre[0] - 1 + cond.jitter[0], centre[1] - 1 + cond.jitter[1]
    )
    return _wcs_header(crval, centre, spec.pixel_scale, cond.rotation_deg)


def _render_model(
    scene: _Scene,
    index: int,
    cond: _Conditions,
    wcs: WCS,
    cd: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    qx: np.ndarray,
    qy: np.ndarray,
) -> np.ndarray:
    """Expected signal of a frame (e-/s/pixel): sources times transparency, plus sky."""
    spec = scene.spec
    psf, half = cond.psf, cond.psf.stamp_half_size()
    model = np.zeros((spec.ny, spec.nx))
    point = np.array(scene.cat.kind) != "galaxy"
    quasar_flux = [q.flux_e_per_s_per_frame[index] for q in scene.quasars]
    flux = np.concatenate([scene.flux_per_frame[point, index], quasar_flux])
    _render_point_sources(
        model, psf, half, np.concatenate([x[point], qx]), np.concatenate([y[point], qy]), flux
    )
    _render_sersic(
        model, psf, half, scene.field_galaxy, float(x[_I_GALAXY]), float(y[_I_GALAXY]), cd, spec.pixel_scale
    )
    lens_x, lens_y = wcs.world_to_pixel_values(scene.lens.ra, scene.lens.dec)
    _render_sersic(model, psf, half, scene.lens, float(lens_x), float(lens_y), cd, spec.pixel_scale)
    model *= cond.transparency
    model += _sky_model(spec, cond)
    return model


def _near_star_candidates(scene: _Scene, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bright, non-saturated, slow stars well inside the frame and far from the saturated star."""
    cat, spec = scene.cat, scene.spec
    slow = np.hypot(cat.pmra, cat.pmdec) < 50.0
    margin = 30.0
    inside = (x > margin) & (x < spec.nx - 1 - margin) & (y > margin) & (y < spec.ny - 1 - margin)
    far = np.hypot(x - x[_I_SATURATED], y - y[_I_SATURATED]) > _SATURATED_ISOLATION_PIXELS
    star = np.array(cat.kind) == "star"
    return np.flatnonzero(star & (cat.g >= 16.0) & (cat.g <= 18.5) & slow & inside & far)


def _simulate_frame(
    scene: _Scene, index: int, cond: _Conditions, rng: np.random.Generator
) -> tuple[FrameTruth, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render, expose and damage one frame.

    Returns
    -------
    tuple
        The frame truth, the data (ADU), source pixel positions ``x, y`` and quasar image ``qx, qy``.
    """
    spec, cat = scene.spec, scene.cat
    header = _frame_wcs_header(scene, cond)
    wcs = _wcs(header)
    ra, dec = _propagate(cat.ra, cat.dec, cat.pmra, cat.pmdec, float(_years_since_ref_epoch(cond.mjd)))
    x, y = wcs.world_to_pixel_values(ra, dec)
    qx, qy = wcs.world_to_pixel_values([q.ra for q in scene.quasars], [q.dec for q in scene.quasars])
    roi_x, roi_y = (float(v) for v in wcs.world_to_pixel_values(spec.ra0, spec.dec0))
    model = _render_model(scene, index, cond, wcs, _cd_matrix(header), x, y, qx, qy)
    data = _expose(spec, model, rng)

    near_star = None
    candidates = _near_star_candidates(scene, x, y)
    if index in {0, spec.n_frames // 2} and candidates.size:
        near_star = int(rng.choice(candidates))
    avoid = [
        (roi_x, roi_y, _CR_ROI_AVOID_PIXELS),
        (float(x[_I_SATURATED]), float(y[_I_SATURATED]), _CR_SATURATED_AVOID_PIXELS),
        (float(x[_I_ISOLATED]), float(y[_I_ISOLATED]), _CR_ISOLATED_AVOID_PIXELS),
    ]
    near = None if near_star is None else (float(x[near_star]), float(y[near_star]))
    cosmic_pixels = _cosmic_rays(rng, (spec.ny, spec.nx), avoid, near)
    data[cosmic_pixels[:, 1], cosmic_pixels[:, 0]] += rng.uniform(*_CR_ADU, len(cosmic_pixels))
    data[:, scene.bad_column] += cond.bad_column_offset * (1.0 + rng.normal(0.0, 0.1, spec.ny))
    np.minimum(data, spec.saturation_adu, out=data)

    frame = _frame_truth(
        spec,
        index,
        cond,
        header,
        (roi_x, roi_y),
        cosmic_pixels,
        None if near_star is None else int(cat.source_id[near_star]),
        scene.bad_column,
        scene.quasars,
    )
    return frame, data, x, y, qx, qy


def _source_truths(scene: _Scene, xs: list[np.ndarray], ys: list[np.ndarray]) -> list[SourceTruth]:
    """Truth records of the catalogue sources, with their per-frame positions."""
    cat = scene.cat
    mean_flux = _flux_from_mag(scene.r_mag, scene.spec.zero_point)
    return [
        SourceTruth(
            source_id=int(cat.source_id[i]),
            kind=cat.kind[i],
            ra=float(cat.ra[i]),
            dec=float(cat.dec[i]),
            pmra=float(cat.pmra[i]),
            pmdec=float(cat.pmdec[i]),
            parallax=float(cat.parallax[i]),
            g_mag=float(cat.g[i]),
            bp_mag=float(cat.bp[i]),
            rp_mag=float(cat.rp[i]),
            r_sdss_mag=float(scene.r_mag[i]),
            flux_e_per_s=float(mean_flux[i]),
            flux_e_per_s_per_frame=scene.flux_per_frame[i].tolist(),
            x_pixels=[float(x[i]) for x in xs],
            y_pixels=[float(y[i]) for y in ys],
        )
        for i in range(len(cat.kind))
    ]


def _write_workdir(out_dir: Path, truth: SimulationTruth, cat: _Catalog) -> None:
    """Write the catalogue, header parser, config and truth of a simulated work directory."""
    _write_catalog(out_dir / CATALOG_FILE, cat)
    (out_dir / HEADER_PARSER_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out_dir / HEADER_PARSER_FILE).write_text(_HEADER_PARSER)
    config = _config(truth.spec, out_dir, truth.roi_disk_radius_arcsec, truth.quasar_images)
    (out_dir / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    (out_dir / TRUTH_FILE).write_text(json.dumps(asdict(truth), indent=1))


def simulate_dataset(out_dir: Path, spec: SimulationSpec = SimulationSpec()) -> SimulationTruth:
    """Simulate a wide-field imaging time series of a lensed quasar and write a lightcurver work directory.

    Parameters
    ----------
    out_dir : Path
        Work directory to create or refresh. Written: ``raw/frame_0001.fits`` ... (float32 ADU, one
        primary HDU), ``catalog/gaia_catalog.csv``, ``config.yaml``, ``header_parser/parse_header.py``
        and ``truth.json``. Stale ``raw/frame_*.fits`` files are removed.
    spec : SimulationSpec
        Simulation parameters; every random draw derives from ``spec.seed``.

    Returns
    -------
    SimulationTruth
        The injected truth, also written to ``truth.json``.
    """
    _validate(spec)
    out_dir = Path(out_dir).resolve()
    raw_dir = out_dir / RAW_DIR
    raw_dir.mkdir(parents=True, exist_ok=True)
    for stale in raw_dir.glob("frame_*.fits"):
        stale.unlink()

    conditions_ss, frames_ss, *scene_ss = np.random.SeedSequence(spec.seed).spawn(5)
    conditions_rng = np.random.default_rng(conditions_ss)
    conditions = [_draw_conditions(spec, i, conditions_rng) for i in range(spec.n_frames)]
    scene = _build_scene(spec, conditions, scene_ss)

    frames, xs, ys, qxs, qys = [], [], [], [], []
    for index, (cond, frame_ss) in enumerate(zip(conditions, frames_ss.spawn(spec.n_frames), strict=True)):
        frame, data, x, y, qx, qy = _simulate_frame(scene, index, cond, np.random.default_rng(frame_ss))
        fits.PrimaryHDU(data.astype(np.float32), header=_frame_header(spec, frame)).writeto(
            raw_dir / frame.file_name, overwrite=True
        )
        frames.append(frame)
        xs.append(x)
        ys.append(y)
        qxs.append(qx)
        qys.append(qy)

    quasars = [
        replace(q, x_pixels=[float(qx[n]) for qx in qxs], y_pixels=[float(qy[n]) for qy in qys])
        for n, q in enumerate(scene.quasars)
    ]
    truth = SimulationTruth(
        spec=spec,
        zero_point=spec.zero_point,
        photometric_band=PHOTOMETRIC_BAND,
        ref_epoch=GAIA_REF_EPOCH,
        roi_name=ROI_NAME,
        roi_ra=spec.ra0,
        roi_dec=spec.dec0,
        roi_disk_radius_arcsec=round(scene.layout.disk_radius * spec.pixel_scale, 1),
        bad_column_x=scene.bad_column,
        frames=frames,
        sources=_source_truths(scene, xs, ys),
        quasar_images=quasars,
        lens_galaxy=scene.lens,
        field_galaxy=scene.field_galaxy,
        variable_star=scene.variable,
        isolated_star_source_id=int(scene.cat.source_id[_I_ISOLATED]),
    )
    _write_workdir(out_dir, truth, scene.cat)
    return truth


def load_truth(out_dir: Path) -> SimulationTruth:
    """Read ``out_dir/truth.json`` written by `simulate_dataset`.

    Parameters
    ----------
    out_dir : Path
        The simulated work directory.

    Returns
    -------
    SimulationTruth
        Equal to the truth returned by the simulation.
    """
    raw = json.loads((Path(out_dir) / TRUTH_FILE).read_text())
    spec = SimulationSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw["spec"].items()})
    return SimulationTruth(
        **{
            **raw,
            "spec": spec,
            "frames": [FrameTruth(**f) for f in raw["frames"]],
            "sources": [SourceTruth(**s) for s in raw["sources"]],
            "quasar_images": [QuasarImageTruth(**q) for q in raw["quasar_images"]],
            "lens_galaxy": SersicTruth(**raw["lens_galaxy"]),
            "field_galaxy": SersicTruth(**raw["field_galaxy"]),
            "variable_star": VariableTruth(**raw["variable_star"]),
        }
    )


def photon_noise_limit(truth: SimulationTruth, index: int) -> dict[str, float]:
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
