"""Assets partitioned by frame: one module per asset."""
