#!/usr/bin/env bash
# Run once by the postgres image on an empty volume: the science database beside Dagster's own.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${LIGHTCURVER_POSTGRES_DB:-lightcurver}\""
