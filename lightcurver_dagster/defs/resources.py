"""Resources, built in one place: the lightcurver config, the science database, the work directory,
the star catalogue.

The config file comes from ``LIGHTCURVER_CONFIG`` (resolved when a run or sensor starts, so the
code location loads without it). The science database URL comes from ``LIGHTCURVER_DATABASE_URL``,
else the config's ``database_url``, else SQLite at ``<workdir>/database.sqlite3``.
"""

from functools import lru_cache
from pathlib import Path

import dagster as dg
from astropy.table import Table
from sqlalchemy import Engine

from lightcurver_ops.catalog import Region, query_gaia, read_catalog_file
from lightcurver_ops.config import CONFIG_ENV_VAR, LightcurverConfig, load_config
from lightcurver_ops.db.engine import open_science_database
from lightcurver_ops.header import HeaderParser, load_header_parser


class LightcurverConfigResource(dg.ConfigurableResource):
    """The user's lightcurver ``config.yaml``, loaded and validated once per process."""

    config_path: str

    def load(self) -> LightcurverConfig:
        return _load_config_cached(self.config_path)

    def header_parser(self) -> HeaderParser:
        """The user's ``<workdir>/header_parser/parse_header.py``, imported once per process."""
        return load_header_parser(self.load().header_parser_path)


class WorkDirectory(dg.ConfigurableResource):
    """The work directory holding every product; paths stored in the database are relative to it."""

    config: LightcurverConfigResource

    @property
    def root(self) -> Path:
        return self.config.load().require_workdir()

    def path(self, relpath: str) -> Path:
        return self.root / relpath


class ScienceDatabase(dg.ConfigurableResource):
    """The science database (SQLAlchemy engine), migrated to the newest schema on first use."""

    config: LightcurverConfigResource

    @property
    def engine(self) -> Engine:
        config = self.config.load()
        if config.science_database_url.startswith("sqlite"):
            config.require_workdir()
        return open_science_database(config.science_database_url)


_configs: dict[tuple[str, int], LightcurverConfig] = {}


def _load_config_cached(path: str) -> LightcurverConfig:
    """Parse the config file once per process and again only when the file changes."""
    resolved = Path(path).expanduser().resolve()
    key = (str(resolved), resolved.stat().st_mtime_ns if resolved.exists() else 0)
    if key not in _configs:
        _configs[key] = load_config(resolved)
    return _configs[key]


def build_resources(config_path: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of every asset and sensor; ``config_path`` defaults to ``LIGHTCURVER_CONFIG``."""
    config = LightcurverConfigResource(config_path=config_path or dg.EnvVar(CONFIG_ENV_VAR))
    return {
        "lightcurver_config": config,
        "work_directory": WorkDirectory(config=config),
        "science_database": ScienceDatabase(config=config),
        "star_catalog": StarCatalog(config=config),
    }


class StarCatalog(dg.ConfigurableResource):
    """Gaia DR3 stars by the config's ``gaia_provider``: the Gaia archive or VizieR online (through
    astroquery, with retries), or a local catalogue file (``gaia_provider: file`` with
    ``gaia_catalog_file``) for observatories without network and for tests."""

    config: LightcurverConfigResource

    def stars_in(self, region: Region) -> Table:
        """Catalogue stars inside ``region`` with Gaia DR3 column names, no quality cut applied."""
        config = self.config.load()
        if config.gaia_provider == "file":
            path = config.resolve(config.gaia_catalog_file)
            table = _read_catalog_cached(str(path), path.stat().st_mtime_ns)
            return table[region.contains(table["ra"], table["dec"])]
        return query_gaia(region, provider=config.gaia_provider)


@lru_cache(maxsize=4)
def _read_catalog_cached(path: str, mtime_ns: int) -> Table:
    return read_catalog_file(Path(path))
