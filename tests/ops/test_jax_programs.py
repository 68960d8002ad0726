"""Programs stored with jax.export and reloaded instead of traced again."""

from collections.abc import Iterator
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lightcurver_ops import jax_programs
from lightcurver_ops.jax_programs import EXPORTS_DIRNAME, call_program, program_key


def _build(scale: float):
    return lambda: jax.jit(lambda x, y: {"sum": jnp.sum(x * scale) + y, "double": 2.0 * x})


def _refuse():
    raise AssertionError("the stored program should have been used")


@contextmanager
def _cache_directory(value: str | None) -> Iterator[None]:
    """JAX's compilation cache directory set to ``value`` for the block, then restored."""
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", value)
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(jax_programs, "_PROGRAMS", {})
    with _cache_directory(str(tmp_path)):
        yield tmp_path


def _args(n: int = 3):
    return np.arange(n, dtype=np.float32), np.float32(0.5)


def test_without_a_cache_directory_the_program_is_only_jitted(monkeypatch):
    monkeypatch.setattr(jax_programs, "_PROGRAMS", {})
    with _cache_directory(None):
        out = call_program("toy", "scale=3", _build(3.0), *_args())
    assert float(out["sum"]) == pytest.approx(9.5)
    assert jax_programs._PROGRAMS == {}  # nothing exported or kept


def test_a_stored_program_is_reloaded_in_a_new_process(cache_dir, monkeypatch):
    out = call_program("toy", "scale=3", _build(3.0), *_args())
    (stored,) = (cache_dir / EXPORTS_DIRNAME).glob("toy-*.jaxexport")
    monkeypatch.setattr(jax_programs, "_PROGRAMS", {})  # as a new process starts
    again = call_program("toy", "scale=3", _refuse, *_args())
    assert float(again["sum"]) == float(out["sum"]) == pytest.approx(9.5)
    np.testing.assert_array_equal(again["double"], [0.0, 2.0, 4.0])
    assert stored.name == program_key("toy", "scale=3", _args()) + ".jaxexport"


def test_other_shapes_or_settings_trace_a_new_program(cache_dir):
    call_program("toy", "scale=3", _build(3.0), *_args())
    bigger = call_program("toy", "scale=3", _build(3.0), *_args(4))
    other = call_program("toy", "scale=1", _build(1.0), *_args())
    assert float(bigger["sum"]) == pytest.approx(18.5) and float(other["sum"]) == pytest.approx(3.5)
    assert len(list((cache_dir / EXPORTS_DIRNAME).glob("toy-*.jaxexport"))) == 3


def test_an_unreadable_stored_program_is_traced_again(cache_dir, monkeypatch):
    call_program("toy", "scale=3", _build(3.0), *_args())
    (stored,) = (cache_dir / EXPORTS_DIRNAME).glob("*.jaxexport")
    stored.write_bytes(b"truncated")
    monkeypatch.setattr(jax_programs, "_PROGRAMS", {})
    out = call_program("toy", "scale=3", _build(3.0), *_args())
    assert float(out["sum"]) == pytest.approx(9.5)
    assert stored.stat().st_size > len(b"truncated")
