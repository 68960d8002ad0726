"""The typed config: lightcurver's template loads unchanged, defaults fill gaps, errors name keys."""

import textwrap
from pathlib import Path

import pytest
import yaml

from lightcurver_ops.config import (
    CONFIG_ENV_VAR,
    DATABASE_URL_ENV_VAR,
    LightcurverConfig,
    load_config,
    parse_config,
)
from lightcurver_ops.errors import ConfigError

# Every top-level key of lightcurver 1.2.4's template config, with its template value (spec §8).
LIGHTCURVER_TEMPLATE = textwrap.dedent(
    """
    workdir: /scratch/lightcurver_tutorial
    raw_dirs:
      - /scratch/lightcurver_tutorial/raw
    files_match_pattern: "*.fits"
    hdu_data_index: 0
    hdu_header_indexes: [0]
    trim_vertical: 0
    trim_horizontal: 0
    multiprocessing_cpu_count: 2
    ROI:
      J0248:
        coordinates: [42.2031, 19.22528]
    ROI_size: 3.5
    telescope:
      name: VST
      latitude: -24.6
      longitude: -70.4
      elevation: 2635.0
      imager_name: OmegaCAM
    do_background_subtraction: true
    mask_sources_before_background: false
    background_estimation_n_boxes: 3
    source_extraction_threshold: 2.0
    source_extraction_min_area: 20
    source_extraction_do_plots: 1
    plate_solve_frames: 'all_never_attempted'
    already_plate_solved: 1
    plate_solving_strategy: 'plate_solve'
    reference_frame_for_wcs: null
    plate_scale_interval: [0.2, 0.23]
    alternate_plate_solve_gaia_radius: 180
    astrometry_net_api_key: null
    max_pixel_anisotropy: 2e-2
    plate_solving_min_success_fraction: 0.85
    star_selection_strategy: 'ROI_disk'
    ROI_disk_radius_arcseconds: 300
    star_min_gmag: 16.0
    star_max_gmag: 20.0
    star_max_astrometric_excess_noise: 3.0
    min_phot_g_mean_flux_over_error: 100.0
    min_number_stars: 6
    gaia_query_redo: false
    gaia_provider: 'gaia'
    stars_to_use_psf: null
    stars_to_use_norm: null
    stars_to_exclude_psf: null
    stars_to_exclude_norm: null
    stamp_size_stars: 24
    stamp_size_ROI: 32
    redo_stamp_extraction: false
    mask_bad_rows_and_columns: true
    clean_cosmics: true
    cosmics_masking_params:
      sigclip: 4.5
      sigfrac: 0.3
      objlim: 5.0
    redo_psf: false
    subsampling_factor: 2
    field_distortion: false
    psf_n_iter_analytic: 100
    psf_n_iter_pixels: 3000
    psf_fit_exclude_strategy:
        sigma_clip: 4
    redo_star_photometry: false
    star_deconv_n_iter: 2000
    star_photometry_uniform_background_per_epoch: false
    star_photometry_starlet_global_background: false
    fluxes_fit_exclude_strategy:
      sigma_clip: 3.0
    constraints_on_frame_columns_for_roi:
      seeing_arcseconds: [0.0, 3.0]
    constraints_on_normalization_coeff:
      coefficient: [0.1, 10.]
    prepared_roi_cutouts_path: null
    photometric_band: r_sdss
    do_ROI_model: true
    point_sources:
       A: [42.202991, 19.225400]
       B: [42.202944, 19.225186]
       C: [42.203227, 19.225010]
       D: [42.203249, 19.225389]
    fix_point_source_astrometry: false
    starting_background: null
    further_optimize_background: true
    roi_model_regularization:
      regularization_strength_scales: 1.0
      regularization_strength_hf: 1.0
      regularization_strength_positivity: 100.0
      regularization_strength_pts_source: 0.01
      regularization_scatter_fluxes_pre_optim: 1.0
      regularization_scatter_fluxes_main_optim: 0.0
    roi_deconv_translations_iters: 300
    roi_deconv_all_iters: 2000
    """
)
MINIMAL = {"workdir": "/srv/lightcurver", "raw_dirs": ["raw"], "ROI": {"Q": {"coordinates": [10.0, -5.0]}}}


def _parse(**values: object) -> LightcurverConfig:
    return parse_config(MINIMAL | values, base_dir=Path("/elsewhere"))


def test_lightcurver_template_loads_unchanged_without_warning(tmp_path, recwarn):
    path = tmp_path / "config.yaml"
    path.write_text(LIGHTCURVER_TEMPLATE)
    config = load_config(path)
    assert not [w for w in recwarn if "unknown config key" in str(w.message)]
    template_keys = set(yaml.safe_load(LIGHTCURVER_TEMPLATE))
    assert len(template_keys) == 68
    assert template_keys <= set(LightcurverConfig.model_fields)
    assert config.roi_name == "J0248"
    assert (config.roi_ra_deg, config.roi_dec_deg) == (42.2031, 19.22528)
    assert config.max_pixel_anisotropy == pytest.approx(0.02)  # YAML reads 2e-2 as a string
    assert config.already_plate_solved is True
    assert config.telescope.name == "VST" and config.telescope.elevation == 2635.0
    assert config.point_sources["C"] == (42.203227, 19.225010)
    assert config.roi_model_regularization.regularization_strength_positivity == 100.0
    assert config.reference_absolute_photometric_survey == "gaia"
    assert config.database_path == Path("/scratch/lightcurver_tutorial/database.sqlite3")


def test_missing_keys_get_lightcurver_defaults():
    config = _parse()
    assert config.stamp_size_stars == 24 and config.stamp_size_ROI == 32
    assert config.background_estimation_n_boxes == 3
    assert config.cosmics_masking_params == {"sigclip": 4.5, "sigfrac": 0.3, "objlim": 5.0}
    assert config.psf_fit_exclude_strategy == {"sigma_clip": 4}
    assert config.telescope is None
    assert config.constraints_on_normalization_coeff == {"coefficient": (0.1, 10.0)}


def test_star_name_strings_split_into_letters_like_lightcurver():
    config = _parse(stars_to_use_psf="abc", stars_to_exclude_norm="d", stars_to_use_norm=5)
    assert config.stars_to_use_psf == ["a", "b", "c"]
    assert config.stars_to_exclude_norm == ["d"]
    assert config.stars_to_use_norm == 5


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("stamp_size_stars", "big", "valid integer"),
        ("plate_solving_strategy", "magic", "'plate_solve'"),
        ("photometric_band", "u_johnson", "r_sdss"),
        ("trim_vertical", -3, "greater than or equal to 0"),
        ("plate_scale_interval", [0.3, 0.2], "[min, max]"),
        ("psf_fit_exclude_strategy", {"sigma_clip": 3, "threshold": [0, 2]}, "sigma_clip"),
        ("fix_point_source_astrometry", "yes please", "prior sigma"),
        ("background_model", "spline", "'polynomial'"),
        ("background_polynomial_degree", 9, "less than or equal to 5"),
    ],
)
def test_wrong_value_names_the_key_and_expected_form(key, value, expected):
    with pytest.raises(ConfigError) as info:
        _parse(**{key: value})
    message = str(info.value)
    assert f"'{key}" in message
    assert expected in message


def test_missing_required_key_is_named():
    with pytest.raises(ConfigError, match="'ROI' is required"):
        parse_config({"workdir": "/w", "raw_dirs": ["r"]}, base_dir=Path("/"))


def test_unknown_keys_warn_by_name():
    with pytest.warns(UserWarning, match="unknown config key 'not_a_key'"):
        _parse(not_a_key=1)
    with pytest.warns(UserWarning, match=r"unknown config key 'telescope\.mirror'"):
        _parse(telescope={"latitude": 1, "longitude": 2, "mirror": "2.2m"})


def test_integer_astrometry_prior_is_a_prior_not_free():
    assert _parse(fix_point_source_astrometry=2).fix_point_source_astrometry == 2.0
    assert _parse(fix_point_source_astrometry=True).fix_point_source_astrometry is True


def test_panstarrs_band_refused_south_of_its_coverage():
    with pytest.raises(ConfigError, match="Pan-STARRS"):
        parse_config(
            MINIMAL | {"ROI": {"Q": {"coordinates": [10, -45]}}, "photometric_band": "r_panstarrs"},
            base_dir=Path("/"),
        )


def test_file_catalog_provider_needs_a_file():
    with pytest.raises(ConfigError, match="gaia_catalog_file"):
        _parse(gaia_provider="file")
    config = _parse(gaia_provider="file", gaia_catalog_file="catalog/gaia.csv")
    assert config.resolve(config.gaia_catalog_file) == Path("/srv/lightcurver/catalog/gaia.csv")


def test_relative_paths_resolve_against_workdir_and_config_folder(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "config.yaml"
    path.write_text(yaml.safe_dump(MINIMAL | {"workdir": "work", "raw_dirs": "raw"}))
    config = load_config(path)
    assert config.workdir == tmp_path / "cfg" / "work"
    assert config.resolved_raw_dirs == [tmp_path / "cfg" / "work" / "raw"]
    assert not config.workdir.exists()  # loading creates nothing


def test_missing_workdir_is_an_error_where_used(tmp_path):
    config = parse_config(MINIMAL | {"workdir": str(tmp_path / "a" / "b")}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        config.require_workdir()
    config = parse_config(MINIMAL | {"workdir": str(tmp_path / "a")}, base_dir=tmp_path)
    assert config.require_workdir().is_dir()


def test_config_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    assert load_config().roi_name == "Q"
    monkeypatch.delenv(CONFIG_ENV_VAR)
    with pytest.raises(ConfigError, match=CONFIG_ENV_VAR):
        load_config()


def test_unreadable_or_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("workdir: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_database_url_default_config_and_environment(monkeypatch):
    monkeypatch.delenv(DATABASE_URL_ENV_VAR, raising=False)
    assert _parse().science_database_url == "sqlite:////srv/lightcurver/database.sqlite3"
    url = "postgresql+psycopg2://lc@db/lightcurver"
    assert _parse(database_url=url).science_database_url == url
    monkeypatch.setenv(DATABASE_URL_ENV_VAR, "postgresql+psycopg2://other/db")
    assert _parse(database_url=url).science_database_url == "postgresql+psycopg2://other/db"
