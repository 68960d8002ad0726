"""Typed model of lightcurver's ``config.yaml``.

Every top-level key of lightcurver 1.2.4's template is a field here with the template's value as
default, so a lightcurver user's file loads unchanged, and a file that lacks keys gets the defaults
instead of lightcurver's hard failure. A value of the wrong type or out of range raises one
:class:`~lightcurver_ops.errors.ConfigError` naming the key and the expected form; an unknown key
is a warning naming it.

The derived values (ROI name and coordinates, paths of the database and product folders, the
absolute-photometry survey) are properties of :class:`LightcurverConfig`, computed in one place.
"""

import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lightcurver_ops.background import MAX_POLYNOMIAL_DEGREE, BackgroundModel
from lightcurver_ops.errors import ConfigError

CONFIG_ENV_VAR = "LIGHTCURVER_CONFIG"
"""Environment variable holding the path of the config file (lightcurver's convention)."""

DATABASE_URL_ENV_VAR = "LIGHTCURVER_DATABASE_URL"
"""Environment variable overriding ``database_url`` (used by deployments for PostgreSQL)."""

GAIA_BANDS = ("r_sdss", "i_sdss", "g_sdss", "V", "R", "Ic", "B_T", "V_T")
"""Photometric bands lightcurver calibrates from Gaia colours."""


def _split_star_names(value: Any) -> Any:
    """lightcurver splits a string of star names into characters ('abc' -> ['a', 'b', 'c'])."""
    return list(value) if isinstance(value, str) else value


StarSelection = Annotated[int | list[str] | None, BeforeValidator(_split_star_names)]
StarNames = Annotated[list[str] | None, BeforeValidator(_split_star_names)]
SkyPosition = tuple[float, float]


class RegionOfInterest(BaseModel):
    """One ROI entry: ``{name: {coordinates: [ra, dec]}}`` (degrees)."""

    model_config = ConfigDict(extra="forbid")
    coordinates: SkyPosition


class Telescope(BaseModel):
    """Observatory site, for ephemerides and the ``telescope_*`` columns of ``frames``.

    Unknown keys are warned about and ignored (lightcurver hung on them).
    """

    model_config = ConfigDict(extra="allow")
    name: str | None = None
    latitude: float = Field(ge=-90, le=90, description="deg")
    longitude: float = Field(ge=-180, le=360, description="deg, east positive")
    elevation: float = Field(default=0.0, description="m")
    imager_name: str | None = None


class RoiModelRegularization(BaseModel):
    """Regularisation strengths of the joint ROI model (lightcurver's ``roi_model_regularization``)."""

    model_config = ConfigDict(extra="forbid")
    regularization_strength_scales: float = Field(default=1.0, ge=0)
    regularization_strength_hf: float = Field(default=1.0, ge=0)
    regularization_strength_positivity: float = Field(default=100.0, ge=0)
    regularization_strength_pts_source: float = Field(default=0.01, ge=0)
    regularization_scatter_fluxes_pre_optim: float = Field(default=1.0, ge=0)
    regularization_scatter_fluxes_main_optim: float = Field(default=0.0, ge=0)


class LightcurverConfig(BaseModel):
    """lightcurver's configuration, typed, with the template's defaults.

    Paths given relative are resolved against ``workdir`` (``workdir`` itself, if relative,
    against the directory of the config file). Nothing is created or required to exist when the
    config is loaded; the folders are checked where they are used.
    """

    model_config = ConfigDict(extra="allow", validate_default=True, frozen=True)

    # --- files and import -------------------------------------------------------------------
    workdir: Path
    raw_dirs: list[Path] = Field(min_length=1)
    files_match_pattern: str = "*.fits"
    hdu_data_index: int = Field(default=0, ge=0)
    hdu_header_indexes: list[Annotated[int, Field(ge=0)]] = Field(default=[0], min_length=1)
    trim_vertical: int = Field(default=0, ge=0, description="pixels cropped at top and bottom")
    trim_horizontal: int = Field(default=0, ge=0, description="pixels cropped left and right")
    multiprocessing_cpu_count: int = Field(default=2, ge=1)

    # --- target and site --------------------------------------------------------------------
    ROI: dict[str, RegionOfInterest] = Field(min_length=1)
    ROI_size: float = Field(default=3.5, gt=0, description="arcsec")
    telescope: Telescope | None = None

    # --- background, sources ----------------------------------------------------------------
    do_background_subtraction: bool = True
    mask_sources_before_background: bool = False
    background_estimation_n_boxes: int = Field(default=3, ge=1)
    source_extraction_threshold: float = Field(default=2.0, gt=0, description="sigma")
    source_extraction_min_area: int = Field(default=20, ge=1, description="pixels")
    source_extraction_do_plots: bool = True

    # --- plate solving ----------------------------------------------------------------------
    plate_solve_frames: Literal["all_never_attempted", "all_not_plate_solved", "all_not_eliminated"] = (
        "all_never_attempted"
    )
    already_plate_solved: bool = True
    plate_solving_strategy: Literal["plate_solve", "alternate_gaia_solve", "adapt_wcs_from_reference"] = (
        "plate_solve"
    )
    reference_frame_for_wcs: int | None = None
    plate_scale_interval: tuple[float, float] = (0.2, 0.23)
    alternate_plate_solve_gaia_radius: float = Field(default=180.0, gt=0, description="arcsec")
    astrometry_net_api_key: str | None = None
    max_pixel_anisotropy: float = Field(default=2e-2, gt=0)
    plate_solving_min_success_fraction: float = Field(default=0.85, ge=0, le=1)

    # --- reference stars --------------------------------------------------------------------
    star_selection_strategy: Literal["ROI_disk", "common_footprint_stars", "stars_per_frame"] = "ROI_disk"
    ROI_disk_radius_arcseconds: float = Field(default=300.0, gt=0)
    star_min_gmag: float | None = 16.0
    star_max_gmag: float | None = 20.0
    star_max_astrometric_excess_noise: float | None = 3.0
    min_phot_g_mean_flux_over_error: float | None = 100.0
    min_number_stars: int = Field(default=6, ge=1)
    gaia_query_redo: bool = False
    gaia_provider: Literal["gaia", "vizier", "file"] = "gaia"
    gaia_catalog_file: Path | None = Field(
        default=None, description="extension: local Gaia-column catalogue used when gaia_provider is 'file'"
    )
    stars_to_use_psf: StarSelection = None
    stars_to_use_norm: StarSelection = None
    stars_to_exclude_psf: StarNames = None
    stars_to_exclude_norm: StarNames = None

    # --- cutouts ----------------------------------------------------------------------------
    stamp_size_stars: int = Field(default=24, ge=5, description="pixels")
    stamp_size_ROI: int = Field(default=32, ge=5, description="pixels")
    redo_stamp_extraction: bool = False
    mask_bad_rows_and_columns: bool = True
    clean_cosmics: bool = True
    cosmics_masking_params: dict[str, float] = Field(
        default_factory=lambda: {"sigclip": 4.5, "sigfrac": 0.3, "objlim": 5.0}
    )

    # --- PSF --------------------------------------------------------------------------------
    redo_psf: bool = False
    subsampling_factor: int = Field(default=2, ge=1, le=8)
    field_distortion: bool = False
    psf_n_iter_analytic: int = Field(default=100, ge=0)
    psf_n_iter_pixels: int = Field(default=3000, ge=0)
    psf_fit_exclude_strategy: dict[str, Any] | None = Field(default_factory=lambda: {"sigma_clip": 4})

    # --- star photometry and normalisation --------------------------------------------------
    redo_star_photometry: bool = False
    star_deconv_n_iter: int = Field(default=2000, ge=0)
    star_photometry_uniform_background_per_epoch: bool = False
    star_photometry_starlet_global_background: bool = False
    fluxes_fit_exclude_strategy: dict[str, Any] | None = Field(default_factory=lambda: {"sigma_clip": 3.0})

    # --- ROI --------------------------------------------------------------------------------
    constraints_on_frame_columns_for_roi: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {"seeing_arcseconds": (0.0, 3.0)}
    )
    constraints_on_normalization_coeff: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {"coefficient": (0.1, 10.0)}
    )
    prepared_roi_cutouts_path: Path | None = None
    photometric_band: str = "r_sdss"
    do_ROI_model: bool = True
    point_sources: dict[str, SkyPosition] = Field(default_factory=dict)
    fix_point_source_astrometry: bool | float = False
    starting_background: Path | None = None
    further_optimize_background: bool = True
    roi_model_regularization: RoiModelRegularization = Field(default_factory=RoiModelRegularization)
    roi_deconv_translations_iters: int = Field(default=300, ge=0)
    roi_deconv_all_iters: int = Field(default=2000, ge=0)

    # --- lightcurver-dagster extensions -----------------------------------------------------
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the science database; null = SQLite in workdir"
    )
    ingest_settle_seconds: float = Field(
        default=10.0, ge=0, description="a raw file is ingested once its size and mtime are this old"
    )
    ingest_max_frames_per_run: int = Field(default=64, ge=1, description="frames per sensor-launched run")
    background_model: BackgroundModel = Field(
        default="polynomial",
        description="extension: sky model of the import, 'polynomial' (fitted to the source-free pixels; "
        "far smaller errors under the stars on smooth skies) or 'mesh' (sep's, as lightcurver)",
    )
    background_polynomial_degree: int = Field(
        default=2, ge=0, le=MAX_POLYNOMIAL_DEGREE, description="degree of the 'polynomial' sky model"
    )
    roi_translations_from_wcs: bool = Field(
        default=True,
        description="extension: roi_model and roi_fluxes keep each frame's translation from its plate "
        "solution instead of fitting it (a free translation is degenerate with the flux ratio of blended "
        "images and with the astrometry)",
    )
    panstarrs_catalog_file: Path | None = Field(
        default=None,
        description="extension: local Pan-STARRS DR1 table (objID, raMean, decMean, <b>MeanPSFMag[Err], "
        "nDetections) answering the Pan-STARRS queries offline",
    )

    # --- validators -------------------------------------------------------------------------
    @field_validator("raw_dirs", mode="before")
    @classmethod
    def _raw_dirs_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    @field_validator("hdu_header_indexes", mode="before")
    @classmethod
    def _header_indexes_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("fix_point_source_astrometry", mode="before")
    @classmethod
    def _astrometry_prior(cls, value: Any) -> Any:
        # lightcurver bug: an int sigma silently meant "free"; here any positive number is a prior.
        if isinstance(value, bool) or value is None:
            return bool(value)
        if isinstance(value, int | float) and value > 0:
            return float(value)
        raise ValueError("expected true, false or a positive prior sigma in pixels")

    @field_validator("plate_scale_interval")
    @classmethod
    def _ordered_interval(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("expected [min, max] arcsec/pixel with 0 < min <= max")
        return value

    @field_validator("photometric_band")
    @classmethod
    def _known_band(cls, value: str) -> str:
        if value not in GAIA_BANDS and "panstarrs" not in value:
            raise ValueError(f"expected one of {', '.join(GAIA_BANDS)} or '<g|r|i|z|y>_panstarrs'")
        return value

    @field_validator("psf_fit_exclude_strategy", "fluxes_fit_exclude_strategy")
    @classmethod
    def _chi2_strategy(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if len(value) != 1 or next(iter(value)) not in ("sigma_clip", "threshold"):
            raise ValueError("expected null, {sigma_clip: k} or {threshold: [lo, hi]}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "LightcurverConfig":
        gmin, gmax = self.star_min_gmag, self.star_max_gmag
        if gmin is not None and gmax is not None and gmin > gmax:
            raise ValueError("star_min_gmag must not exceed star_max_gmag")
        if "panstarrs" in self.photometric_band and self.roi_dec_deg < -30.5:
            raise ValueError("photometric_band: Pan-STARRS does not cover Dec < -30.5 deg")
        if self.gaia_provider == "file" and self.gaia_catalog_file is None:
            raise ValueError("gaia_catalog_file is required when gaia_provider is 'file'")
        return self

    # --- derived values ---------------------------------------------------------------------
    @property
    def roi_name(self) -> str:
        """Name of the region of interest (the first key of ``ROI``, as lightcurver)."""
        return next(iter(self.ROI))

    @property
    def roi_ra_deg(self) -> float:
        return self.ROI[self.roi_name].coordinates[0]

    @property
    def roi_dec_deg(self) -> float:
        return self.ROI[self.roi_name].coordinates[1]

    @property
    def reference_absolute_photometric_survey(self) -> str:
        return "panstarrs" if "panstarrs" in self.photometric_band else "gaia"

    def resolve(self, path: Path | str) -> Path:
        """Absolute path of ``path``, relative paths being taken from the work directory."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.workdir / path

    @property
    def resolved_raw_dirs(self) -> list[Path]:
        return [self.resolve(d) for d in self.raw_dirs]

    @property
    def database_path(self) -> Path:
        """Default SQLite science database, as lightcurver: ``<workdir>/database.sqlite3``."""
        return self.workdir / "database.sqlite3"

    @property
    def science_database_url(self) -> str:
        """SQLAlchemy URL of the science database: env override, config, else SQLite in workdir."""
        return os.environ.get(DATABASE_URL_ENV_VAR) or self.database_url or f"sqlite:///{self.database_path}"

    @property
    def header_parser_path(self) -> Path:
        return self.workdir / "header_parser" / "parse_header.py"

    def require_workdir(self) -> Path:
        """The work directory, created if its parent exists; a clear error otherwise."""
        if not self.workdir.is_dir():
            if not self.workdir.parent.is_dir():
                raise ConfigError(f"workdir: {self.workdir} does not exist and cannot be created")
            self.workdir.mkdir(exist_ok=True)
        return self.workdir


def _expected_form(error: dict[str, Any]) -> str:
    """One line naming the key, the problem and the value received, from a pydantic error."""
    key = ".".join(str(part) for part in error["loc"]) or "<top level>"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"config key '{key}' is required"
    return f"config key '{key}': {message} (got {error.get('input')!r})"


def parse_config(raw: dict[str, Any], *, base_dir: Path, source: str = "config") -> LightcurverConfig:
    """Validate a config mapping; relative ``workdir`` is taken from ``base_dir``.

    Parameters
    ----------
    raw : dict
        The YAML mapping.
    base_dir : Path
        Directory a relative ``workdir`` is resolved against (the config file's folder).
    source : str
        Name of the origin, used in messages.

    Raises
    ------
    ConfigError
        Naming every key that is missing, of the wrong type or out of range.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    raw = dict(raw)
    if isinstance(raw.get("workdir"), str | Path):
        workdir = Path(raw["workdir"]).expanduser()
        raw["workdir"] = workdir if workdir.is_absolute() else (base_dir / workdir).resolve()
    try:
        config = LightcurverConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_expected_form(e) for e in exc.errors(include_url=False)]
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None
    unknown = list(config.model_extra or {})
    if config.telescope is not None:
        unknown += [f"telescope.{key}" for key in config.telescope.model_extra or {}]
    for key in unknown:
        warnings.warn(f"{source}: unknown config key '{key}' is ignored", UserWarning, stacklevel=2)
    return config


def config_path_from_env() -> Path:
    """Path of the config file from ``LIGHTCURVER_CONFIG``; a clear error if it is unset."""
    value = os.environ.get(CONFIG_ENV_VAR)
    if not value:
        raise ConfigError(f"no config file given: set {CONFIG_ENV_VAR} to the path of your config.yaml")
    return Path(value)


def load_config(path: Path | str | None = None) -> LightcurverConfig:
    """Load and validate a lightcurver ``config.yaml``.

    Parameters
    ----------
    path : Path or str, optional
        The file; defaults to the ``LIGHTCURVER_CONFIG`` environment variable.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or holds an invalid value (the key is named).
    """
    path = Path(path) if path is not None else config_path_from_env()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(raw, base_dir=path.resolve().parent, source=str(path))
