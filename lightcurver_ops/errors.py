"""Exceptions raised by lightcurver_ops, each naming what was wrong."""

from pathlib import Path


class LightcurverError(Exception):
    """Base class of every error raised by lightcurver_ops."""


class ConfigError(LightcurverError, ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


class FrameError(LightcurverError):
    """A single frame cannot be processed; other frames are unaffected.

    Parameters
    ----------
    path : Path or str
        The raw file the frame comes from.
    reason : str
        A short human-readable reason, stored as the frame's elimination comment.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class HeaderParserError(FrameError):
    """The user's ``parse_header`` failed or returned unusable values for a frame."""


class CatalogError(LightcurverError):
    """A star catalogue cannot be read or queried, or too few reference stars pass the selection."""


class AstrometryError(LightcurverError):
    """A frame cannot be plate solved; the message says why.

    Raised for too few sources, no consistent match between two source lists, a degenerate or poor
    fit, or astrometry.net missing, timing out or finding no solution. Callers record the reason as
    the frame's elimination comment.
    """
