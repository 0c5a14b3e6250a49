"""`neurobrowse demo` end to end with the tiny preset, headless: builds everything, renders the compare
window into a PNG with real content, and a second run reuses every artifact."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _demo(workdir: Path, png: Path | None) -> subprocess.CompletedProcess:
    """Run the demo with no display at all (no $DISPLAY, no QT_QPA_PLATFORM): it must fall back by itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["NEUROBROWSE_LABELS_DB"] = str(workdir.parent / "labels.sqlite")
    shot = ["--screenshot", str(png)] if png else []
    return subprocess.run([sys.executable, "-m", "neurobrowse", "demo", "--preset", "tiny", "--workdir", str(workdir),
                        *shot], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _artifacts(work: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file the build steps write (corpus, models, stores)."""
    return {str(p.relative_to(work)): (p.stat().st_size, p.stat().st_mtime_ns)
            for d in ("corpus", "models", "stores") for p in sorted((work / d).rglob("*")) if p.is_file()}


def _image_facts(png: Path) -> tuple[int, int, int, int]:
    """(width, height, strongly red pixels, distinct colours) of a PNG."""
    from PySide6.QtGui import QImage

    img = QImage(str(png))
    assert not img.isNull(), f"{png} is not a readable image"
    w, h = img.width(), img.height()
    red, colours = 0, set()
    for y in range(0, h, 3):
        for x in range(0, w, 3):
            c = img.pixelColor(x, y)
            colours.add((c.red() // 16, c.green() // 16, c.blue() // 16))
            if c.red() > 200 and c.green() < 120 and c.blue() < 120:
                red += 1
    return w, h, red, len(colours)


@pytest.mark.slow
def test_demo_builds_renders_and_reuses(tmp_path):
    work, png = tmp_path / "demo", tmp_path / "shot.png"
    r = _demo(work, png)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert png.exists() and str(png) in r.stdout
    for sub in ("corpus/manifest.json", "models/gelu", "models/solu_ln", "stores/gelu/zarr.json",
                "stores/solu_ln/zarr.json", "models/solu_ln-random", "stores/solu_ln-random/zarr.json",
                "stores/gelu-random/zarr.json"):
        assert (work / sub).exists(), sub
    w, h, red, colours = _image_facts(png)
    assert (w, h) == (1800, 1250)
    assert red > 15, "no red-shaded tokens in the screenshot"  # the forest plot leaves the browsers less room
    assert colours > 30, "the screenshot looks blank"

    # again, without --screenshot: no display, so it renders WORKDIR/demo.png and says where
    png2 = work / "demo.png"
    built = _artifacts(work)
    assert any(k.startswith("stores/solu_ln/") for k in built) and any(k.startswith("models/gelu/") for k in built)
    r2 = _demo(work, None)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "no display" in r2.stdout and str(png2.absolute()) in r2.stdout
    steps = dict(re.findall(r"(corpus|train|record|index) ([\d.]+) s", r2.stdout))
    assert set(steps) == {"corpus", "train", "record", "index"}, r2.stdout
    # every cached step reused its artifacts: not one file of the corpus, models or stores was written again
    # (a check on the files, not on the clock: a busy machine cannot make it pass or fail)
    again = _artifacts(work)
    assert again == built, f"a cached step wrote again: {sorted(k for k in again if again[k] != built.get(k))}"
    assert "3/4 recording" not in r2.stdout and "2/4 training" in r2.stdout
    assert png2.exists()

