"""The whole tree is ruff-clean under pyproject's [tool.ruff] settings (line length 120, E/W/F/B)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_ruff_check_is_clean():
    r = _ruff(".")  # nothing excluded: the last file being split (solu_core/dictionary.py) landed clean
    assert r.returncode == 0, f"ruff check found errors (fix them; do not exclude):\n{r.stdout}{r.stderr}"


def test_no_test_module_imports_another_test_module():
    """Shared test helpers live in tests/helpers.py and tests/builders.py: a test module importing another
    one's (private) helpers, in its code or in a child process's code string, couples them."""
    import re

    pattern = re.compile(r"\b(?:from|import)\s+(?:tests\.|\.)?test_\w+")
    files = [*sorted((ROOT / "tests").glob("*.py")), ROOT / "conftest.py"]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in files if p.is_file()
             for m in pattern.finditer(p.read_text(encoding="utf-8"))]
    assert not found, "move the shared helpers to tests/helpers.py or tests/builders.py:\n" + "\n".join(found)
