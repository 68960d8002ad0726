"""Light-curve products of the ROI model: per-epoch and per-night tables, astrometry, plots, HTML page.

The photometry of each epoch (one frame) gives, for every point source, a flux and its error in
normalised e-/s. From them:

- :func:`magnitudes` converts fluxes to magnitudes with asymmetric errors;
- :func:`per_epoch_rows` builds one row per epoch in lightcurver's column order (spec §6.12);
- :func:`per_night_rows` groups consecutive epochs closer than ``max_gap_days`` into nights and
  averages each source's sigma-clipped fluxes with weights ``1/d_flux^2``;
- :func:`write_csv`, :func:`write_astrometry`, :func:`plot_light_curves` and :func:`write_html`
  write the files (each replaced atomically).

Column names are built from the source labels and never parsed back, so labels may contain
underscores (lightcurver's per-night grouping split column names on ``_`` and broke on them); two
labels whose columns would coincide (``A`` and ``A_d``: both give ``A_d_flux``) are refused.
The HTML page embeds plotly.js, so it opens offline (lightcurver's page loaded Vue, plotly and
papaparse from CDNs).
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import sigmaclip

from lightcurver_ops.files import atomic_path

MAG_ERROR_FACTOR = 2.5 / math.log(10.0)
"""``2.5 / ln 10 = 1.0857...``: magnitude error per unit relative flux error."""
DEFAULT_MAX_GAP_DAYS = 0.8
"""Consecutive epochs closer than this (days) belong to the same night."""
DEFAULT_CLIP_SIGMA = 2.0
"""Per-night sigma clipping of each source's fluxes, in standard deviations (both sides)."""

EPOCH_COLUMNS = ("frame_id", "mjd", "zeropoint", "reduced_chi2", "seeing", "sky_level_electron_per_second")
"""Leading columns of the per-epoch table, before the per-source columns."""
EPOCH_SOURCE_SUFFIXES = ("flux", "d_flux", "mag", "d_mag_down", "d_mag_up", "d_mag")
"""Per-source columns of the per-epoch table: ``<label>_<suffix>``."""
NIGHT_COLUMNS = (
    "mjd",
    "scatter_mjd",
    "zeropoint",
    "reduced_chi2",
    "seeing",
    "sky_level_electron_per_second",
    "n_epochs",
)
"""Leading columns of the per-night table, before the per-source columns."""
NIGHT_SOURCE_SUFFIXES = (
    "flux",
    "d_flux",
    "scatter_flux",
    "count_flux",
    "mag",
    "d_mag_down",
    "d_mag_up",
    "d_mag",
    "scatter_mag",
)
"""Per-source columns of the per-night table: ``<label>_<suffix>``."""
_AVERAGED = ("zeropoint", "reduced_chi2", "seeing", "sky_level_electron_per_second")
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


@dataclass(frozen=True)
class EpochPhotometry:
    """Photometry of the point sources on one epoch (frame).

    Attributes
    ----------
    frame_id : int
        The frame.
    mjd : float
        Modified Julian date of the exposure, days.
    zeropoint : float
        Magnitude of 1 e-/s of normalised flux; NaN when the frame has no absolute calibration.
    reduced_chi2 : float
        Reduced chi2 of the ROI model on this epoch.
    seeing : float
        FWHM of the frame's PSF, arcsec.
    sky_level_electron_per_second : float
        Sky level of the frame, e-/s per pixel.
    fluxes : Mapping[str, tuple[float, float]]
        Point-source label -> ``(flux, d_flux)`` in normalised e-/s; ``d_flux`` includes the error of
        the normalisation coefficient. NaN for a source that could not be measured.
    """

    frame_id: int
    mjd: float
    zeropoint: float
    reduced_chi2: float
    seeing: float
    sky_level_electron_per_second: float
    fluxes: Mapping[str, tuple[float, float]]


class Magnitudes(NamedTuple):
    """Magnitudes with asymmetric errors; arrays of the broadcast shape of the inputs (0-d for scalars).

    Attributes
    ----------
    mag : ndarray
        ``-2.5 log10(F) + zp``; NaN for ``F <= 0`` or a NaN zero point.
    d_mag_down : ndarray
        ``mag - mag(F + dF)`` (towards brighter), mag; does not depend on the zero point.
    d_mag_up : ndarray
        ``mag(F - dF) - mag`` (towards fainter), mag; NaN when ``F - dF <= 0``.
    d_mag : ndarray
        Symmetric first-order error ``1.0857 |dF / F|``, mag.
    """

    mag: np.ndarray
    d_mag_down: np.ndarray
    d_mag_up: np.ndarray
    d_mag: np.ndarray


def magnitudes(flux: Any, d_flux: Any, zeropoint: Any) -> Magnitudes:
    """Magnitudes and their errors from fluxes (vectorised, numpy broadcasting).

    Parameters
    ----------
    flux : array_like
        ``F``, normalised e-/s.
    d_flux : array_like
        ``dF``, 1-sigma error of ``F``, e-/s; >= 0 or NaN.
    zeropoint : array_like
        Magnitude of 1 e-/s; NaN gives NaN ``mag`` but still gives the errors.

    Returns
    -------
    Magnitudes
        ``mag, d_mag_down, d_mag_up, d_mag``. Every field is NaN where ``F <= 0`` or ``F`` is NaN.

    Raises
    ------
    ValueError
        If a ``d_flux`` is negative.
    """
    flux, d_flux, zeropoint = np.broadcast_arrays(
        np.asarray(flux, dtype=np.float64),
        np.asarray(d_flux, dtype=np.float64),
        np.asarray(zeropoint, dtype=np.float64),
    )
    if np.any(d_flux < 0):
        raise ValueError(f"d_flux must be >= 0, got {d_flux[d_flux < 0].ravel()[:5]}")
    positive = flux > 0
    safe = np.where(positive, flux, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(positive, -2.5 * np.log10(safe) + zeropoint, np.nan)
        d_mag_down = np.where(positive, 2.5 * np.log10((safe + d_flux) / safe), np.nan)
        fainter = safe - d_flux
        d_mag_up = np.where(
            positive & (fainter > 0), 2.5 * np.log10(safe / np.where(fainter > 0, fainter, 1.0)), np.nan
        )
        d_mag = np.where(positive, MAG_ERROR_FACTOR * np.abs(d_flux / safe), np.nan)
    return Magnitudes(mag, d_mag_down, d_mag_up, d_mag)


def source_columns(sources: Sequence[str], suffixes: Sequence[str]) -> dict[str, dict[str, str]]:
    """Column names ``<label>_<suffix>`` per source, checked for collisions.

    Parameters
    ----------
    sources : sequence of str
        Point-source labels (any characters, underscores included).
    suffixes : sequence of str
        Column suffixes, e.g. :data:`EPOCH_SOURCE_SUFFIXES`.

    Returns
    -------
    dict
        ``label -> {suffix: column}``, labels sorted.

    Raises
    ------
    ValueError
        If ``sources`` is empty, has an empty or repeated label, or two labels give the same column
        (``A`` and ``A_d`` both give ``A_d_flux``).
    """
    labels = list(sources)
    if not labels:
        raise ValueError("no point sources")
    if any(not isinstance(label, str) or not label for label in labels):
        raise ValueError(f"point-source labels must be non-empty strings, got {labels}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"repeated point-source labels in {labels}")
    columns = {label: {suffix: f"{label}_{suffix}" for suffix in suffixes} for label in sorted(labels)}
    owner: dict[str, str] = {}
    for label, names in columns.items():
        for name in names.values():
            if name in owner:
                raise ValueError(f"labels {owner[name]!r} and {label!r} both give the column {name!r}")
            owner[name] = label
    return columns


def _sorted_epochs(epochs: Sequence[EpochPhotometry], sources: Sequence[str]) -> list[EpochPhotometry]:
    """Epochs by MJD (then frame), checked to be unique frames that measured every source."""
    ordered = sorted(epochs, key=lambda epoch: (epoch.mjd, epoch.frame_id))
    frames = [epoch.frame_id for epoch in ordered]
    if len(set(frames)) != len(frames):
        raise ValueError("an epoch's frame_id appears more than once")
    for epoch in ordered:
        if not math.isfinite(epoch.mjd):
            raise ValueError(f"frame {epoch.frame_id} has a non-finite mjd {epoch.mjd}")
        missing = [label for label in sources if label not in epoch.fluxes]
        if missing:
            raise ValueError(f"frame {epoch.frame_id} has no flux for {missing}")
    return ordered


def _magnitude_fields(names: Mapping[str, str], flux: float, d_flux: float, zeropoint: float) -> dict:
    """``mag, d_mag_down, d_mag_up, d_mag`` columns of one source, as Python floats."""
    result = magnitudes(flux, d_flux, zeropoint)
    return {names[field]: float(getattr(result, field)) for field in Magnitudes._fields}


def per_epoch_rows(epochs: Sequence[EpochPhotometry], sources: Sequence[str]) -> list[dict[str, Any]]:
    """The per-epoch light curve: one row per epoch, sorted by MJD.

    Parameters
    ----------
    epochs : sequence of EpochPhotometry
        Every epoch must have a flux (possibly NaN) for every source.
    sources : sequence of str
        Point-source labels; columns follow them sorted.

    Returns
    -------
    list of dict
        Keys in order: :data:`EPOCH_COLUMNS`, then per source ``X`` (sorted labels) ``X_flux,
        X_d_flux`` (normalised e-/s), ``X_mag, X_d_mag_down, X_d_mag_up, X_d_mag`` (mag).
        ``frame_id`` is an int, everything else a float.

    Raises
    ------
    ValueError
        For bad labels (see :func:`source_columns`), a repeated frame, a non-finite MJD, a missing
        source flux or a negative ``d_flux``.
    """
    columns = source_columns(sources, EPOCH_SOURCE_SUFFIXES)
    rows = []
    for epoch in _sorted_epochs(epochs, list(columns)):
        row: dict[str, Any] = {"frame_id": int(epoch.frame_id)}
        row.update({name: float(getattr(epoch, name)) for name in EPOCH_COLUMNS[1:]})
        for label, names in columns.items():
            flux, d_flux = (float(value) for value in epoch.fluxes[label])
            row[names["flux"]] = flux
            row[names["d_flux"]] = d_flux
            row.update(_magnitude_fields(names, flux, d_flux, epoch.zeropoint))
        rows.append(row)
    return rows


def group_nights(mjd: Sequence[float], max_gap_days: float = DEFAULT_MAX_GAP_DAYS) -> list[np.ndarray]:
    """Indices of consecutive observations chained by gaps <= ``max_gap_days``.

    Parameters
    ----------
    mjd : sequence of float, shape (n,)
        Sorted dates, days.
    max_gap_days : float
        Largest gap inside a night, days; > 0.

    Returns
    -------
    list of ndarray of int
        One index array per night, in order.
    """
    if not max_gap_days > 0:
        raise ValueError(f"max_gap_days must be positive, got {max_gap_days}")
    mjd = np.asarray(mjd, dtype=np.float64)
    if mjd.size == 0:
        return []
    if np.any(np.diff(mjd) < 0):
        raise ValueError("mjd must be sorted")
    breaks = np.flatnonzero(np.diff(mjd) > max_gap_days) + 1
    return np.split(np.arange(mjd.size), breaks)


def weighted_night_flux(
    flux: np.ndarray, d_flux: np.ndarray, clip_sigma: float
) -> tuple[float, float, float, int]:
    """Sigma-clipped, ``1/d_flux^2``-weighted mean flux of one source over one night.

    Parameters
    ----------
    flux, d_flux : ndarray, shape (n,)
        Fluxes and their errors, e-/s. Measurements with a non-finite flux or a non-finite or zero
        error are left out before clipping.
    clip_sigma : float
        ``scipy.stats.sigmaclip`` with ``low = high = clip_sigma`` on the (unweighted) fluxes; the
        measurements kept are those inside its final bounds.

    Returns
    -------
    flux : float
        Weighted mean, e-/s.
    d_flux : float
        ``sqrt(1 / sum(w))``, e-/s.
    scatter_flux : float
        Weighted standard deviation ``sqrt(sum(w (F - mean)^2) / sum(w))``, e-/s (0 for one epoch).
    count : int
        Measurements kept; 0 (and NaN for the rest) when none is usable.
    """
    flux = np.asarray(flux, dtype=np.float64)
    d_flux = np.asarray(d_flux, dtype=np.float64)
    usable = np.isfinite(flux) & np.isfinite(d_flux) & (d_flux > 0)
    flux, d_flux = flux[usable], d_flux[usable]
    if flux.size == 0:
        return math.nan, math.nan, math.nan, 0
    _, lower, upper = sigmaclip(flux, low=clip_sigma, high=clip_sigma)
    kept = (flux >= lower) & (flux <= upper)
    flux, weight = flux[kept], 1.0 / d_flux[kept] ** 2
    total = weight.sum()
    mean = float((weight * flux).sum() / total)
    scatter = float(np.sqrt((weight * (flux - mean) ** 2).sum() / total))
    return mean, float(np.sqrt(1.0 / total)), scatter, int(kept.sum())


def _quiet_nanmean(values: np.ndarray) -> float:
    """Mean of the finite values; NaN (no warning) when there is none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def per_night_rows(
    epochs: Sequence[EpochPhotometry],
    sources: Sequence[str],
    max_gap_days: float = DEFAULT_MAX_GAP_DAYS,
    clip_sigma: float = DEFAULT_CLIP_SIGMA,
) -> list[dict[str, Any]]:
    """The per-night light curve: epochs chained by gaps <= ``max_gap_days`` are averaged.

    Parameters
    ----------
    epochs : sequence of EpochPhotometry
        As for :func:`per_epoch_rows`; sorted by MJD here.
    sources : sequence of str
        Point-source labels.
    max_gap_days : float
        Largest gap between consecutive epochs of one night, days; > 0.
    clip_sigma : float
        Sigma clipping of each source's fluxes within a night (see :func:`weighted_night_flux`); > 0.

    Returns
    -------
    list of dict
        One row per night, in order. Keys: ``mjd`` (mean), ``scatter_mjd`` (population standard
        deviation, 0 for a single epoch), the means of ``zeropoint, reduced_chi2, seeing,
        sky_level_electron_per_second`` over the epochs where they are finite, ``n_epochs`` (int);
        then per source ``X`` (sorted labels): ``X_flux, X_d_flux, X_scatter_flux`` (e-/s),
        ``X_count_flux`` (int, epochs kept by the clipping), ``X_mag, X_d_mag_down, X_d_mag_up,
        X_d_mag`` (from ``X_flux``, ``X_d_flux`` and the night's mean zero point) and
        ``X_scatter_mag = 1.0857 X_scatter_flux / X_flux``.

    Raises
    ------
    ValueError
        As :func:`per_epoch_rows`, or for a non-positive ``max_gap_days`` or ``clip_sigma``.
    """
    if not clip_sigma > 0:
        raise ValueError(f"clip_sigma must be positive, got {clip_sigma}")
    columns = source_columns(sources, NIGHT_SOURCE_SUFFIXES)
    ordered = _sorted_epochs(epochs, list(columns))
    mjd = np.array([epoch.mjd for epoch in ordered], dtype=np.float64)
    rows = []
    for night in group_nights(mjd, max_gap_days):
        members = [ordered[i] for i in night]
        row: dict[str, Any] = {"mjd": float(mjd[night].mean()), "scatter_mjd": float(mjd[night].std())}
        for name in _AVERAGED:
            row[name] = _quiet_nanmean(
                np.array([getattr(epoch, name) for epoch in members], dtype=np.float64)
            )
        row["n_epochs"] = len(members)
        for label, names in columns.items():
            pairs = np.array([epoch.fluxes[label] for epoch in members], dtype=np.float64).reshape(-1, 2)
            if np.any(pairs[:, 1] < 0):
                raise ValueError(f"negative d_flux for {label!r} in the night at mjd {row['mjd']:.3f}")
            flux, d_flux, scatter, count = weighted_night_flux(pairs[:, 0], pairs[:, 1], clip_sigma)
            row[names["flux"]] = flux
            row[names["d_flux"]] = d_flux
            row[names["scatter_flux"]] = scatter
            row[names["count_flux"]] = count
            row.update(_magnitude_fields(names, flux, d_flux, row["zeropoint"]))
            row[names["scatter_mag"]] = MAG_ERROR_FACTOR * scatter / flux if flux > 0 else math.nan
        rows.append(row)
    return rows


def _csv_field(value: Any) -> str:
    """Text of one CSV field: floats at full (repr) precision, NaN and None as an empty field."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path | str) -> Path:
    """Write table rows as CSV, replacing ``path`` atomically.

    The header is the first row's keys, in order. Floats are written at full precision (``repr``,
    so ``float(text)`` gives back the same number); **NaN is written as an empty field**, which
    spreadsheets and ``pandas.read_csv`` read as missing (read it back with ``float(s) if s else
    nan``); infinities as ``inf``/``-inf``; integers without a decimal point.

    Parameters
    ----------
    rows : sequence of mapping
        Rows with identical keys, e.g. from :func:`per_epoch_rows` or :func:`per_night_rows`.
    path : Path or str
        Output file; parent folders are created.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If there are no rows or the rows do not all have the first row's keys.
    """
    if not rows:
        raise ValueError("no rows to write (the header comes from the first row)")
    header = list(rows[0])
    for number, row in enumerate(rows):
        if list(row) != header:
            raise ValueError(f"row {number} has keys {list(row)}, not the first row's {header}")
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_field(row[key]) for key in header])
    return path


def write_astrometry(
    path: Path | str,
    positions: Mapping[str, tuple[float, float]],
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write the point-source positions as lightcurver's ``{label: [ra_deg, dec_deg]}`` JSON.

    Parameters
    ----------
    path : Path or str
        Output JSON file (``<p>_astrometry.json``); parent folders are created.
    positions : Mapping[str, tuple[float, float]]
        Label -> ``(ra, dec)`` in degrees (ICRS); written with labels sorted.
    extra : Mapping, optional
        Anything else worth keeping (e.g. ``{label: {"d_ra_arcsec": ..., "d_dec_arcsec": ...}}``),
        JSON-serialisable. It is NOT put into ``path`` (whose layout stays exactly lightcurver's)
        but written to a sibling file ``<stem>_extra.json``.

    Returns
    -------
    list of Path
        The files written: ``[path]``, plus the extra file when ``extra`` is given.

    Raises
    ------
    ValueError
        If ``positions`` is empty, a label is empty, or a position is not finite with
        ``0 <= ra < 360`` and ``-90 <= dec <= 90``.
    """
    if not positions:
        raise ValueError("no positions")
    layout: dict[str, list[float]] = {}
    for label in sorted(positions):
        if not isinstance(label, str) or not label:
            raise ValueError(f"labels must be non-empty strings, got {label!r}")
        ra, dec = (float(value) for value in positions[label])
        if not (math.isfinite(ra) and math.isfinite(dec) and 0 <= ra < 360 and -90 <= dec <= 90):
            raise ValueError(f"position of {label!r} must be finite degrees, got ra={ra}, dec={dec}")
        layout[label] = [ra, dec]
    path = Path(path)
    written = [path]
    documents: list[tuple[Path, Any]] = [(path, layout)]
    if extra is not None:
        extra_path = path.with_name(f"{path.stem}_extra.json")
        documents.append((extra_path, dict(extra)))
        written.append(extra_path)
    for target, document in documents:
        text = json.dumps(document, indent=2, allow_nan=False) + "\n"
        with atomic_path(target) as temporary:
            temporary.write_text(text, encoding="utf-8")
    return written


def _plotted(rows: Sequence[Mapping[str, Any]], label: str) -> dict[str, np.ndarray]:
    """MJD, magnitude and its errors of one source from table rows.

    When no row has a finite zero point, instrumental magnitudes (zero point 0) are used so that an
    uncalibrated light curve is still drawn.
    """
    names = {suffix: f"{label}_{suffix}" for suffix in ("flux", "mag", "d_mag_down", "d_mag_up", "d_mag")}

    def column(key: str) -> np.ndarray:
        return np.array([row[key] for row in rows], dtype=np.float64)

    values = {"mjd": column("mjd")}
    values.update({suffix: column(name) for suffix, name in names.items()})
    if not _calibrated(rows):
        values["mag"] = magnitudes(values["flux"], 0.0, 0.0).mag
    return values


def _calibrated(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any row has a finite zero point."""
    return any(math.isfinite(float(row["zeropoint"])) for row in rows)


def _magnitude_label(epoch_rows: Sequence[Mapping[str, Any]], night_rows: Sequence[Mapping[str, Any]]) -> str:
    """Y-axis title: calibrated or instrumental magnitudes."""
    if _calibrated(epoch_rows) or _calibrated(night_rows):
        return "magnitude"
    return "instrumental magnitude (zero point 0)"


def plot_light_curves(
    epoch_rows: Sequence[Mapping[str, Any]],
    night_rows: Sequence[Mapping[str, Any]],
    sources: Sequence[str],
    path: Path | str,
    title: str = "",
) -> Path:
    """PNG of the light curves: magnitude vs MJD per source, nights filled, epochs faint.

    Parameters
    ----------
    epoch_rows, night_rows : sequence of mapping
        From :func:`per_epoch_rows` and :func:`per_night_rows`.
    sources : sequence of str
        Labels to draw (one colour each, sorted).
    path : Path or str
        Output PNG, replaced atomically; parent folders are created.
    title : str
        Figure title.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If there are no night rows or ``sources`` is empty.
    """
    from matplotlib.figure import Figure

    if not night_rows:
        raise ValueError("no night rows to plot")
    labels = sorted(source_columns(sources, ()))
    figure = Figure(figsize=(10, 5.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for index, label in enumerate(labels):
        colour = f"C{index % 10}"
        if epoch_rows:
            epoch = _plotted(epoch_rows, label)
            axes.errorbar(
                epoch["mjd"],
                epoch["mag"],
                yerr=np.vstack([epoch["d_mag_down"], epoch["d_mag_up"]]),
                fmt="o",
                ms=2.5,
                color=colour,
                alpha=0.25,
                elinewidth=0.6,
                mfc="none",
            )
        night = _plotted(night_rows, label)
        axes.errorbar(
            night["mjd"],
            night["mag"],
            yerr=np.vstack([night["d_mag_down"], night["d_mag_up"]]),
            fmt="o",
            ms=5,
            color=colour,
            capsize=2,
            label=label,
        )
    axes.invert_yaxis()
    axes.set_xlabel("MJD")
    axes.set_ylabel(_magnitude_label(epoch_rows, night_rows))
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(title="nights (filled), epochs (faint)", fontsize="small")
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path


def _traces(rows: Sequence[Mapping[str, Any]], label: str, kind: str) -> dict[str, Any]:
    """Arrays and hover text of one plotly trace (``kind`` is ``"night"`` or ``"epoch"``)."""
    values = _plotted(rows, label)
    if kind == "night":
        names = [f"night {number + 1} ({int(row['n_epochs'])} epochs)" for number, row in enumerate(rows)]
    else:
        names = [f"frame {int(row['frame_id'])}" for row in rows]
    hover = [
        f"{html.escape(label)} {name}<br>MJD {mjd:.4f}<br>mag {mag:.4f} +{up:.4f} / -{down:.4f}"
        f"<br>d_mag {d_mag:.4f}"
        for name, mjd, mag, up, down, d_mag in zip(
            names,
            values["mjd"],
            values["mag"],
            values["d_mag_up"],
            values["d_mag_down"],
            values["d_mag"],
            strict=True,
        )
    ]
    values["hover"] = hover
    return values


def _summary_table(
    epoch_rows: Sequence[Mapping[str, Any]], night_rows: Sequence[Mapping[str, Any]], labels
) -> str:
    """HTML table: per source, epochs and nights with a magnitude, median magnitude errors."""
    lines = [
        "<table>",
        "<thead><tr><th>source</th><th>epochs</th><th>nights</th>"
        "<th>median d_mag (epochs)</th><th>median d_mag (nights)</th></tr></thead>",
        "<tbody>",
    ]
    for label in labels:
        cells = [html.escape(label)]
        for rows in (epoch_rows, night_rows):
            values = _plotted(rows, label) if rows else {"mag": np.array([])}
            cells.append(str(int(np.isfinite(values["mag"]).sum())))
        for rows in (epoch_rows, night_rows):
            errors = _plotted(rows, label)["d_mag"] if rows else np.array([])
            errors = errors[np.isfinite(errors)]
            cells.append(f"{np.median(errors):.4f}" if errors.size else "")
        lines.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em 2em; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
th, td {{ border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
</style>
</head>
<body>
<h1>{title}</h1>
{plot}
<h2>Sources</h2>
{table}
<p>Filled points: nights (sigma-clipped weighted means of the epochs); faint points: single epochs.
Error bars are asymmetric (flux &plusmn; its error converted to magnitudes).</p>
</body>
</html>
"""


def write_html(
    epoch_rows: Sequence[Mapping[str, Any]],
    night_rows: Sequence[Mapping[str, Any]],
    sources: Sequence[str],
    path: Path | str,
    title: str = "Light curves",
) -> Path:
    """Self-contained interactive HTML page of the light curves (plotly.js embedded, works offline).

    One legend entry per source, named exactly by its label: the per-night points with asymmetric
    error bars, and the per-epoch points as a fainter trace in the same legend group (toggled with
    it). The magnitude axis is reversed; hovering shows the frame or night, MJD, magnitude and errors.
    Below the plot a table gives, per source, the number of epochs and nights with a magnitude and
    the median magnitude errors. The page is about 5 MB (the plotly.js bundle).

    Parameters
    ----------
    epoch_rows, night_rows : sequence of mapping
        From :func:`per_epoch_rows` and :func:`per_night_rows`.
    sources : sequence of str
        Labels to draw, sorted.
    path : Path or str
        Output ``.html``, replaced atomically; parent folders are created.
    title : str
        Page and plot title.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If there are no night rows or ``sources`` is empty.
    """
    import plotly.graph_objects as go

    if not night_rows:
        raise ValueError("no night rows to plot")
    labels = sorted(source_columns(sources, ()))
    figure = go.Figure()
    for index, label in enumerate(labels):
        colour = _PALETTE[index % len(_PALETTE)]
        night = _traces(night_rows, label, "night")
        figure.add_trace(
            go.Scatter(
                x=night["mjd"],
                y=night["mag"],
                mode="markers",
                name=label,
                legendgroup=label,
                marker={"color": colour, "size": 8},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": night["d_mag_up"],
                    "arrayminus": night["d_mag_down"],
                    "color": colour,
                },
                hovertext=night["hover"],
                hoverinfo="text",
            )
        )
        if epoch_rows:
            epoch = _traces(epoch_rows, label, "epoch")
            figure.add_trace(
                go.Scatter(
                    x=epoch["mjd"],
                    y=epoch["mag"],
                    mode="markers",
                    name=label,
                    legendgroup=label,
                    showlegend=False,
                    opacity=0.3,
                    marker={"color": colour, "size": 4, "symbol": "circle-open"},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": epoch["d_mag_up"],
                        "arrayminus": epoch["d_mag_down"],
                        "color": colour,
                        "thickness": 1,
                    },
                    hovertext=epoch["hover"],
                    hoverinfo="text",
                )
            )
    figure.update_layout(
        title={"text": html.escape(title)},
        xaxis={"title": {"text": "MJD"}},
        yaxis={"title": {"text": _magnitude_label(epoch_rows, night_rows)}, "autorange": "reversed"},
        template="plotly_white",
        legend={"title": {"text": "source"}},
        height=600,
    )
    plot = figure.to_html(
        full_html=False,
        include_plotlyjs=True,
        include_mathjax=False,
        config={"displaylogo": False, "responsive": True},
    )
    page = _PAGE.format(
        title=html.escape(title), plot=plot, table=_summary_table(epoch_rows, night_rows, labels)
    )
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return path
