"""Pure science and storage for lightcurver-dagster (never imports dagster)."""
