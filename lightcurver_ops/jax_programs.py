"""JAX programs kept across processes: traced once, stored with :mod:`jax.export`, reloaded.

JAX's persistent compilation cache spares a new process the XLA compilation of a program, not the
tracing of the Python function that builds it: about 5 s for the PSF fit, paid again by every
Dagster run (a new process each). :func:`call_program` stores the traced program (StableHLO,
serialised by :mod:`jax.export`) beside the compilation cache and reloads it in later processes; the
reloaded program then compiles from the persistent cache as before.

A stored program is found by a key over its name, its static settings, the shapes and dtypes of its
arguments, the versions of jax, jaxlib and STARRED, and the source of every module of
:mod:`lightcurver_ops`, so a change of code or library traces afresh. Without a compilation cache
directory (see :func:`lightcurver_ops.psf.enable_compilation_cache`) programs are only jitted.
"""

import functools
import hashlib
import importlib.metadata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export

from lightcurver_ops.files import atomic_path

EXPORTS_DIRNAME = "exported"
"""Folder of the stored programs, inside the compilation cache directory."""


@functools.cache
def _code_version() -> str:
    """Hash of the library versions and of this package's source (it defines the programs)."""
    digest = hashlib.sha256()
    for package in ("jax", "jaxlib", "starred-astro"):
        digest.update(f"{package}={importlib.metadata.version(package)};".encode())
    for source in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def program_key(name: str, settings: str, args: Sequence[Any]) -> str:
    """Key of a program: its name, static settings, argument shapes and dtypes, the code version."""
    digest = hashlib.sha256(f"{name};{settings};{_code_version()};".encode())
    for arg in args:
        dtype = arg.dtype if hasattr(arg, "dtype") else np.result_type(arg)
        digest.update(f"{np.shape(arg)}:{dtype};".encode())
    return f"{name}-{digest.hexdigest()[:24]}"


_PROGRAMS: dict[str, Callable[..., Any]] = {}
"""The programs this process has loaded or traced, by key."""


def _read(path: Path) -> export.Exported | None:
    """A stored program, or None if missing or unreadable (it is then traced and stored again)."""
    if not path.is_file():
        return None
    try:
        return export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # a truncated or foreign file fails in flatbuffers with errors of any kind
        return None


def call_program(name: str, settings: str, build: Callable[[], Callable[..., Any]], *args: Any) -> Any:
    """Run a pure JAX program on ``args``, reusing its traced form across processes.

    Parameters
    ----------
    name : str
        Name of the program (``"psf_fit"``), the start of its file name.
    settings : str
        Its static settings (those ``build`` closes over, e.g. iteration limits), part of the key.
    build : callable
        Returns the jitted function (called only when no stored program fits).
    *args : array_like
        Arguments, arrays only (static settings belong in ``build``'s closure and in ``settings``).

    Returns
    -------
    The program's outputs, as the jitted function returns them.
    """
    directory = jax.config.jax_compilation_cache_dir
    if not directory:
        return build()(*args)
    key = program_key(name, settings, args)
    program = _PROGRAMS.get(key)
    if program is None:
        path = Path(directory) / EXPORTS_DIRNAME / f"{key}.jaxexport"
        exported = _read(path)
        if exported is None:
            exported = export.export(build())(*args)
            with atomic_path(path) as temporary:
                temporary.write_bytes(exported.serialize())
        program = _PROGRAMS[key] = jax.jit(exported.call)
    return program(*args)
