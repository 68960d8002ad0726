"""The user's header parser: ``<workdir>/header_parser/parse_header.py`` (lightcurver's convention).

The file defines ``parse_header(header) -> {'mjd': float, 'gain': float, 'exptime': float, ...}``.
It is imported once per process (and again only if the file changes), not once per frame.
"""

import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from astropy.io.fits import Header

from lightcurver_ops.errors import ConfigError, HeaderParserError

HeaderParser = Callable[[Header], Mapping[str, Any]]


@dataclass(frozen=True)
class FrameHeaderInfo:
    """What the pipeline needs from a raw header.

    Attributes
    ----------
    mjd : float
        Modified Julian Date of the exposure.
    gain : float
        e-/ADU.
    exptime : float
        Exposure time, s.
    filter : str or None
        Filter name, when the parser returns one.
    """

    mjd: float
    gain: float
    exptime: float
    filter: str | None = None


@lru_cache(maxsize=8)
def _import_parser(path: Path, mtime_ns: int) -> HeaderParser:
    """Import ``parse_header`` from ``path``; cached on (path, mtime) so edits are picked up."""
    spec = importlib.util.spec_from_file_location(f"lightcurver_header_parser_{mtime_ns}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"header parser {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"header parser {path}: fails to import: {type(exc).__name__}: {exc}") from exc
    parser = getattr(module, "parse_header", None)
    if not callable(parser):
        raise ConfigError(f"header parser {path}: defines no function parse_header(header)")
    return parser


def load_header_parser(path: Path) -> HeaderParser:
    """The ``parse_header`` function of the user's file.

    Raises
    ------
    ConfigError
        If the file is missing, fails to import or defines no ``parse_header``.
    """
    path = Path(path).resolve()
    try:
        mtime_ns = path.stat().st_mtime_ns
    except OSError:
        raise ConfigError(
            f"header parser {path} not found: write parse_header(header) -> "
            "{'mjd': ..., 'gain': ..., 'exptime': ...} there"
        ) from None
    return _import_parser(path, mtime_ns)


def _positive_finite(values: Mapping[str, Any], key: str, frame: Path) -> float:
    try:
        value = float(values[key])
    except KeyError:
        raise HeaderParserError(frame, f"parse_header returned no '{key}'") from None
    except (TypeError, ValueError):
        reason = f"parse_header returned a non-numeric '{key}': {values[key]!r}"
        raise HeaderParserError(frame, reason) from None
    if not math.isfinite(value) or (key != "mjd" and value <= 0):
        raise HeaderParserError(frame, f"parse_header returned an invalid '{key}': {value!r}")
    return value


def parse_frame_header(parser: HeaderParser, header: Header, frame: Path) -> FrameHeaderInfo:
    """Run the user's parser on one frame's header and check what it returns.

    Raises
    ------
    HeaderParserError
        Naming the frame, when the parser raises (a missing key, say) or returns a missing,
        non-numeric, non-finite or non-positive ``gain``/``exptime`` or a bad ``mjd``.
    """
    try:
        values = parser(header)
    except Exception as exc:
        if isinstance(exc, KeyError):
            detail = f"missing header key: {exc.args[0] if exc.args else exc}"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        source = getattr(getattr(parser, "__code__", None), "co_filename", "the header parser")
        raise HeaderParserError(frame, f"parse_header ({source}) failed: {detail}") from exc
    if not isinstance(values, Mapping):
        raise HeaderParserError(frame, f"parse_header returned {type(values).__name__}, expected a dict")
    filter_name = values.get("filter")
    return FrameHeaderInfo(
        mjd=_positive_finite(values, "mjd", frame),
        gain=_positive_finite(values, "gain", frame),
        exptime=_positive_finite(values, "exptime", frame),
        filter=None if filter_name is None else str(filter_name),
    )
