"""Light-curve products: magnitudes, per-epoch and per-night tables, CSV, JSON, PNG and HTML files."""

import csv
import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from lightcurver_ops.light_curves import (
    EPOCH_COLUMNS,
    EpochPhotometry,
    magnitudes,
    per_epoch_rows,
    per_night_rows,
    plot_light_curves,
    write_astrometry,
    write_csv,
    write_html,
)

SOURCES = ["lens_A", "B"]


def epoch(frame_id, mjd, fluxes, zeropoint=25.0):
    return EpochPhotometry(
        frame_id=frame_id,
        mjd=mjd,
        zeropoint=zeropoint,
        reduced_chi2=1.0 + 0.01 * frame_id,
        seeing=1.0 + 0.1 * frame_id,
        sky_level_electron_per_second=10.0 * frame_id,
        fluxes=fluxes,
    )


def two_nights_and_one():
    """Two nights of 3 epochs (the second chained by gaps of 0.7 d) and an isolated epoch, shuffled."""
    a = [(100.0, 1.0), (102.0, 2.0), (98.0, 1.0)]
    b = [(50.0, 5.0), (55.0, 5.0), (60.0, 10.0)]
    mjds = [1000.0, 1000.1, 1000.2, 1001.5, 1002.2, 1002.9, 1010.0]
    epochs = []
    for i, mjd in enumerate(mjds):
        fluxes = {"lens_A": a[i] if i < 3 else (90.0 + i, 1.0), "B": b[i - 3] if 3 <= i < 6 else (50.0, 5.0)}
        epochs.append(epoch(i + 1, mjd, fluxes, zeropoint=25.0 if i != 1 else math.nan))
    return epochs[::-1]


def test_magnitudes_by_hand():
    result = magnitudes([100.0, 10.0, 10.0, 0.0, -5.0], [10.0, 10.0, 15.0, 1.0, 1.0], 25.0)
    assert result.mag[0] == pytest.approx(20.0, abs=1e-12)
    assert result.d_mag_down[0] == pytest.approx(0.1034817128, rel=1e-9)  # 2.5 log10(1.1)
    assert result.d_mag_up[0] == pytest.approx(0.1143937264, rel=1e-9)  # 2.5 log10(1 / 0.9)
    assert result.d_mag[0] == pytest.approx(0.1085736205, rel=1e-9)  # 2.5 / ln(10) * 0.1
    assert result.mag[1] == pytest.approx(22.5, abs=1e-12)
    assert result.d_mag_down[1] == pytest.approx(2.5 * math.log10(2.0), rel=1e-12)
    assert math.isnan(result.d_mag_up[1])  # F - dF = 0
    assert math.isnan(result.d_mag_up[2])  # F - dF < 0
    for field in result:
        assert np.isnan(field[3:]).all()  # F <= 0
    scalar = magnitudes(100.0, 10.0, math.nan)
    assert math.isnan(scalar.mag) and float(scalar.d_mag_up) == pytest.approx(0.1143937264, rel=1e-9)
    with pytest.raises(ValueError, match="d_flux"):
        magnitudes(1.0, -1.0, 25.0)


def test_per_epoch_columns_and_order():
    rows = per_epoch_rows(two_nights_and_one(), SOURCES)
    per_source = ["flux", "d_flux", "mag", "d_mag_down", "d_mag_up", "d_mag"]
    expected = list(EPOCH_COLUMNS) + [f"{s}_{c}" for s in ("B", "lens_A") for c in per_source]
    assert list(EPOCH_COLUMNS) == [
        "frame_id",
        "mjd",
        "zeropoint",
        "reduced_chi2",
        "seeing",
        "sky_level_electron_per_second",
    ]
    assert all(list(row) == expected for row in rows)
    assert [row["frame_id"] for row in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[0]["lens_A_mag"] == pytest.approx(20.0)
    assert math.isnan(rows[1]["lens_A_mag"])  # no zero point
    assert rows[1]["lens_A_d_mag"] == pytest.approx(2.5 / math.log(10) * 2 / 102)


def test_night_grouping_weighted_mean_and_underscored_label():
    rows = per_night_rows(two_nights_and_one(), SOURCES)
    assert [row["n_epochs"] for row in rows] == [3, 3, 1]
    first, second, alone = rows
    assert first["mjd"] == pytest.approx(1000.1)
    assert first["scatter_mjd"] == pytest.approx(np.std([1000.0, 1000.1, 1000.2]))
    assert first["zeropoint"] == 25.0  # the NaN one is left out of the mean
    assert first["seeing"] == pytest.approx(1.2)
    flux, sigma = np.array([100.0, 102.0, 98.0]), np.array([1.0, 2.0, 1.0])
    w = 1 / sigma**2
    mean = 223.5 / 2.25
    assert first["lens_A_flux"] == pytest.approx(mean, rel=1e-12)
    assert first["lens_A_d_flux"] == pytest.approx(math.sqrt(1 / 2.25), rel=1e-12)
    scatter = math.sqrt((w * (flux - mean) ** 2).sum() / w.sum())
    assert first["lens_A_scatter_flux"] == pytest.approx(scatter, rel=1e-12)
    assert first["lens_A_count_flux"] == 3
    assert first["lens_A_mag"] == pytest.approx(25.0 - 2.5 * math.log10(mean), rel=1e-12)
    assert first["lens_A_scatter_mag"] == pytest.approx(2.5 / math.log(10) * scatter / mean, rel=1e-12)
    assert first["lens_A_d_mag_down"] == pytest.approx(2.5 * math.log10(1 + math.sqrt(1 / 2.25) / mean))
    assert second["B_flux"] == pytest.approx((50 / 25 + 55 / 25 + 60 / 100) / (2 / 25 + 1 / 100))
    assert second["mjd"] == pytest.approx(1002.2)
    assert alone["scatter_mjd"] == 0.0 and alone["lens_A_scatter_flux"] == 0.0
    assert alone["lens_A_d_flux"] == 1.0 and alone["lens_A_count_flux"] == 1
    assert list(first)[:7] == [
        "mjd",
        "scatter_mjd",
        "zeropoint",
        "reduced_chi2",
        "seeing",
        "sky_level_electron_per_second",
        "n_epochs",
    ]
    assert list(first)[7:16] == [
        f"B_{c}"
        for c in ("flux", "d_flux", "scatter_flux", "count_flux", "mag", "d_mag_down", "d_mag_up", "d_mag")
    ] + ["B_scatter_mag"]


def test_outlier_epoch_clipped():
    values = [100.0, 101.0, 99.0, 100.5, 99.5, 100.0, 150.0]  # 2-sigma clipping needs >= 6 epochs
    epochs = [epoch(i, 2000.0 + 0.05 * i, {"A": (v, 1.0)}) for i, v in enumerate(values)]
    (night,) = per_night_rows(epochs, ["A"])
    assert night["A_count_flux"] == 6
    assert night["A_flux"] == pytest.approx(100.0)
    assert night["A_d_flux"] == pytest.approx(1 / math.sqrt(6))
    (unclipped,) = per_night_rows(epochs, ["A"], clip_sigma=3.0)
    assert unclipped["A_count_flux"] == 7


def test_unusable_fluxes_and_bad_arguments():
    epochs = [epoch(1, 1.0, {"A": (math.nan, math.nan)}), epoch(2, 1.1, {"A": (math.nan, 1.0)})]
    (night,) = per_night_rows(epochs, ["A"])
    assert night["A_count_flux"] == 0 and math.isnan(night["A_flux"]) and math.isnan(night["A_mag"])
    with pytest.raises(ValueError, match="both give the column 'A_d_flux'"):
        per_epoch_rows([epoch(1, 1.0, {"A": (1, 1), "A_d": (1, 1)})], ["A", "A_d"])
    with pytest.raises(ValueError, match="no flux for"):
        per_epoch_rows([epoch(1, 1.0, {"A": (1, 1)})], ["A", "C"])
    with pytest.raises(ValueError, match="more than once"):
        per_epoch_rows([epoch(1, 1.0, {"A": (1, 1)}), epoch(1, 2.0, {"A": (1, 1)})], ["A"])
    with pytest.raises(ValueError, match="max_gap_days"):
        per_night_rows(epochs, ["A"], max_gap_days=0)
    with pytest.raises(ValueError, match="clip_sigma"):
        per_night_rows(epochs, ["A"], clip_sigma=-1)


def read_back(path):
    def value(text):
        if text == "":
            return math.nan
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)

    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, [{key: value(text) for key, text in row.items()} for row in reader]


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) if isinstance(a, float) and math.isnan(a) else a == b


@pytest.mark.parametrize("table", [per_epoch_rows, per_night_rows])
def test_csv_round_trip(tmp_path, table):
    rows = table(two_nights_and_one(), SOURCES)
    path = write_csv(rows, tmp_path / "out" / "table.csv")
    header, back = read_back(path)
    assert header == list(rows[0])
    assert len(back) == len(rows)
    for original, restored in zip(rows, back, strict=True):
        assert all(same(original[key], restored[key]) for key in header), (original, restored)
    text = path.read_text()
    assert "nan" not in text.lower()
    assert not list(tmp_path.joinpath("out").glob(".*.tmp"))
    with pytest.raises(ValueError, match="no rows"):
        write_csv([], tmp_path / "empty.csv")
    with pytest.raises(ValueError, match="keys"):
        write_csv([{"a": 1}, {"b": 2}], tmp_path / "bad.csv")


def test_astrometry_json(tmp_path):
    positions = {"lens_B": (150.5, -2.25), "A": (150.4999, -2.2501)}
    written = write_astrometry(tmp_path / "p_astrometry.json", positions)
    assert written == [tmp_path / "p_astrometry.json"]
    text = written[0].read_text()
    assert json.loads(text) == {"A": [150.4999, -2.2501], "lens_B": [150.5, -2.25]}
    assert list(json.loads(text)) == ["A", "lens_B"]
    extra = {"A": {"d_ra_arcsec": 0.002, "d_dec_arcsec": 0.003}}
    written = write_astrometry(tmp_path / "p_astrometry.json", positions, extra=extra)
    assert written[1] == tmp_path / "p_astrometry_extra.json"
    assert json.loads(written[1].read_text()) == extra
    assert json.loads(written[0].read_text()) == {"A": [150.4999, -2.2501], "lens_B": [150.5, -2.25]}
    with pytest.raises(ValueError, match="finite degrees"):
        write_astrometry(tmp_path / "bad.json", {"A": (10.0, 95.0)})


def test_png_written(tmp_path):
    from matplotlib.image import imread

    epochs = two_nights_and_one()
    path = plot_light_curves(
        per_epoch_rows(epochs, SOURCES),
        per_night_rows(epochs, SOURCES),
        SOURCES,
        tmp_path / "lc.png",
        "test",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    image = imread(path)
    assert image.shape[:2] == (550, 1000) and image[..., :3].std() > 0.01


class _Resources(HTMLParser):
    """src/href attributes of the document's elements (script bodies are not parsed as markup)."""

    def __init__(self):
        super().__init__()
        self.links = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.links += [(tag, name, value) for name, value in attrs if name in ("src", "href") and value]


def test_html_self_contained(tmp_path):
    epochs = two_nights_and_one()
    path = write_html(
        per_epoch_rows(epochs, SOURCES),
        per_night_rows(epochs, SOURCES),
        SOURCES,
        tmp_path / "lc.html",
        "RX J1131 & co",
    )
    page = path.read_text()
    assert "<title>RX J1131 &amp; co</title>" in page
    parser = _Resources()
    parser.feed(page)
    assert parser.scripts >= 2  # the inline plotly.js bundle and the figure
    assert not [link for link in parser.links if re.match(r"\s*(https?:)?//", link[2])], parser.links
    # Outside the (inline) scripts, no attribute points to the network either. plotly.js itself holds
    # attribution links such as href="https://plotly.com/" inside JavaScript strings: not requests.
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", page, flags=re.S | re.I)
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", markup, flags=re.I)
    assert not re.search(r"""<script\b[^>]*\bsrc\s*=""", page, flags=re.I)
    for label in SOURCES:
        assert f'"name":"{label}"' in page
        assert f"<td>{label}</td>" in page
