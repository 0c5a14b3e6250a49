"""The app's headless runs (neurobrowse.qt.smoke) through the entry points a user has, each in its own process
as a user starts it: the packaged app's `--smoke-test` (what `make package` runs on its build) and
`--screenshot` (packaging/neurobrowse_app.py, the script PyInstaller freezes), and `neurobrowse open` /
`compare` with `--offscreen --screenshot`, on the real tiny stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.builders import cli_command

ROOT = Path(__file__).resolve().parents[1]
APP = [sys.executable, str(ROOT / "packaging" / "neurobrowse_app.py")]


def _run(cmd: list, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(QT_QPA_PLATFORM="offscreen", NEUROBROWSE_LABELS_DB=str(tmp_path / "labels.sqlite"))
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _png(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct colours on a coarse grid) of a PNG."""
    from PySide6.QtGui import QImage

    img = QImage(str(path))
    assert not img.isNull(), f"{path} is not a readable image"
    colours = {img.pixelColor(x, y).rgb() >> 4 for y in range(0, img.height(), 7) for x in range(0, img.width(), 7)}
    return img.width(), img.height(), len(colours)


def test_packaged_app_smoke_test_and_screenshot(tiny_stores, tmp_path):
    r = _run([*APP, "--smoke-test", tiny_stores["solu_ln"]], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"smoke test ok: {tiny_stores['solu_ln']} opened") and "top snippets" in r.stdout

    r = _run([*APP, "--smoke-test", tmp_path / "no-such-store"], tmp_path)
    assert r.returncode == 2 and "smoke test FAILED" in r.stderr, r.stdout + r.stderr
    r = _run([*APP, "--smoke-test"], tmp_path)
    assert r.returncode == 2 and "error: --smoke-test needs a STORE" in r.stderr

    shot = tmp_path / "compare.png"
    r = _run([*APP, tiny_stores["gelu"], tiny_stores["solu_ln"], "--offscreen", "--screenshot", shot], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"screenshot written to {shot}" in r.stdout
    w, h, colours = _png(shot)
    assert (w, h) == (1800, 1250) and colours > 30, (w, h, colours)


def test_cli_open_and_compare_screenshots(tiny_stores, tmp_path):
    one = tmp_path / "open.png"
    r = _run(cli_command("open", tiny_stores["gelu"], "--offscreen", "--screenshot", one, "--neuron", 3), tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"screenshot written to {one}" in r.stdout
    w, h, colours = _png(one)
    assert (w, h) == (1600, 950) and colours > 30, (w, h, colours)

    two = tmp_path / "compare.png"
    r = _run(cli_command("compare", tiny_stores["gelu"], tiny_stores["solu_ln"], "--offscreen", "--screenshot", two),
             tmp_path)
    assert r.returncode == 0, r.stderr
    assert _png(two)[:2] == (1800, 1250)

    r = _run(cli_command("open", tiny_stores["solu_ln"], "--smoke-test"), tmp_path)
    assert r.returncode == 0 and "smoke test ok" in r.stdout, r.stderr
