"""Partitions: one dynamic partition per raw frame, added by the raw-frames sensor."""

import dagster as dg

frames_partitions = dg.DynamicPartitionsDefinition(name="frames")
