"""Plain-text summaries of the science database, for the command line."""

from statistics import median

from sqlalchemy import Engine, select

from lightcurver_ops.db.schema import frames


def frame_summary(engine: Engine) -> str:
    """Counts of frames (used, eliminated with reasons) and the median seeing and sky level."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                frames.c.partition_key,
                frames.c.eliminated,
                frames.c.comment,
                frames.c.seeing_pixels,
                frames.c.sky_level_electron_per_second,
            )
        ).all()
    used = [row for row in rows if not row.eliminated]
    lines = [f"frames: {len(rows)} imported, {len(used)} usable, {len(rows) - len(used)} eliminated"]
    lines += [f"  eliminated {row.partition_key}: {row.comment}" for row in rows if row.eliminated]
    if used:
        seeing = median(row.seeing_pixels for row in used)
        sky = median(row.sky_level_electron_per_second for row in used)
        lines.append(f"median seeing {seeing:.2f} px, median sky {sky:.1f} e-/s")
    return "\n".join(lines)
