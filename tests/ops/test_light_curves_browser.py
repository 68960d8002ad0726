"""The light-curve HTML page renders offline in a real browser (headless Chromium, network blocked).

Chromium is required, not optional: ``scripts/test.sh`` installs Debian's ``chromium`` package when no
browser is on PATH, so a missing binary fails this test instead of skipping it.
"""

import html
import re
import shutil
import subprocess

from lightcurver_ops.light_curves import EpochPhotometry, per_epoch_rows, per_night_rows, write_html

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
SOURCES = ["A", "lens_B", "C"]


def find_browser():
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def headless_browser(profile) -> list[str]:
    """The start of a headless Chromium command line with its own profile directory."""
    browser = find_browser()
    assert browser is not None, (
        f"no headless browser found on PATH (looked for {', '.join(BROWSERS)}); "
        "install one with `apt-get install -y --no-install-recommends chromium` (scripts/test.sh does)"
    )
    flags = ["--headless=new", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run"]
    return [browser, *flags, f"--user-data-dir={profile}"]


def rendered_dom(page, profile) -> str:
    """The DOM of ``page`` after its scripts ran in headless Chromium with no network."""
    command = [
        *headless_browser(profile),
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: any network request would fail
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_html_renders_legend_offline(tmp_path):
    epochs = [
        EpochPhotometry(
            frame_id=i,
            mjd=59000.0 + 0.3 * i + (i // 3) * 2.0,
            zeropoint=25.0,
            reduced_chi2=1.0,
            seeing=1.1,
            sky_level_electron_per_second=5.0,
            fluxes={label: (100.0 * (k + 1) + i, 2.0) for k, label in enumerate(SOURCES)},
        )
        for i in range(9)
    ]
    page = write_html(
        per_epoch_rows(epochs, SOURCES), per_night_rows(epochs, SOURCES), SOURCES, tmp_path / "lc.html", "t"
    )
    dom = rendered_dom(page, tmp_path / "profile")
    assert 'class="main-svg"' in dom, "plotly did not draw"
    legend = re.findall(r'<text\b[^>]*class="legendtext"[^>]*>(.*?)</text>', dom, flags=re.S)
    assert sorted(html.unescape(text) for text in legend) == sorted(SOURCES), legend
