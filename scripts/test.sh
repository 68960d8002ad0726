#!/usr/bin/env bash
# Set up and run the whole test suite: lint, then pytest (SQLite and a real PostgreSQL server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "installing the PostgreSQL server for the database tests" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
  && ! command -v google-chrome >/dev/null 2>&1; then
  echo "installing Chromium for the light-curve HTML test (headless browser)" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
export LIGHTCURVER_REQUIRE_POSTGRES=1
export OMP_NUM_THREADS=1  # astroscrappy: one thread per process (see lightcurver_dagster/__init__.py)
# one JAX compilation cache for the whole session (every test's work directory, every run process)
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$PWD/.jax_cache}"
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
