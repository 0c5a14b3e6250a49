"""The dependency direction: store <- solu_core <- neurobrowse, and nothing points back."""

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a test dependency; run `make test` to install it"
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    n = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert n >= 6 and f"Contracts: {n} kept, 0 broken" in r.stdout, r.stdout


def _modules(package: str) -> list[str]:
    """Every module of the package, its rooms' modules included."""
    pkg_dir = ROOT / package
    return [package] + [m.name for m in pkgutil.walk_packages([str(pkg_dir)], prefix=f"{package}.")
                        if not m.name.endswith("__main__")]


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("store", ["torch", "PySide6", "pyqtgraph", "solu_core", "neurobrowse"]),
        ("solu_core", ["PySide6", "pyqtgraph", "neurobrowse"]),
    ],
)
def test_importing_a_layer_loads_nothing_above_it(package, forbidden):
    """At run time too (import-linter sees static imports; this also catches importlib tricks)."""
    code = (
        "import importlib, sys\n"
        f"for m in {_modules(package)!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})\n"
        "print(','.join(bad))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"{package} pulled in {r.stdout.strip()}"
