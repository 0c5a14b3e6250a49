"""The CLI shell: every verb is listed with a description, and bad usage exits non-zero."""

import re
import subprocess
import sys

from neurobrowse.cli import VERBS, build_parser, main
from tests.builders import run_cli


def test_help_lists_every_verb_with_a_one_line_description():
    text = build_parser().format_help()
    for verb in VERBS:
        m = re.search(rf"^\s+{verb}\s+(\S.*)$", text, re.MULTILINE)
        assert m, f"`neurobrowse --help` does not list {verb!r} with a description:\n{text}"


def test_each_verb_has_its_own_help(capsys):
    for verb in VERBS:
        try:
            main([verb, "--help"])
        except SystemExit as e:
            assert e.code == 0, verb
        out = capsys.readouterr().out
        assert out.startswith(f"usage: neurobrowse {verb}"), (verb, out[:200])


def test_unknown_verb_exits_2_and_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "neurobrowse", "no-such-verb"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "invalid choice" in r.stderr
    r = subprocess.run([sys.executable, "-m", "neurobrowse", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("neurobrowse ")


def test_cli_runs_without_torch():
    """torch is the `model` extra: browsing, indexing and --help must work where it is not installed."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch blocked by the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from neurobrowse.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "train" in r.stdout and "open" in r.stdout


def test_open_without_a_store_for_headless_modes_exits_2():
    r = run_cli(["open", "--smoke-test"])
    assert r.returncode == 2 and "--smoke-test needs a STORE" in r.stderr


def test_compare_help_prints_a_plain_percent_sign():
    r = subprocess.run([sys.executable, "-m", "neurobrowse", "compare", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "95% Wilson" in " ".join(r.stdout.split()) and "%%" not in r.stdout
