"""Assets computed over all frames: one module per asset."""
