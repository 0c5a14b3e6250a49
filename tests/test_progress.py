"""The shared progress bar (store.progress): a tqdm bar in a terminal, a few plain lines in a log."""

from __future__ import annotations

import io

from store import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_step_not_a_redraw_per_update(monkeypatch):
    monkeypatch.delenv("NEUROBROWSE_PROGRESS", raising=False)
    log = io.StringIO()
    bar = progress.progress_bar(total=1_000_000, desc="record demo", unit="tok", unit_scale=True, stream=log)
    assert isinstance(bar, progress.LineProgress)
    for _ in range(1000):
        bar.update(1000)
        bar.set_postfix_str("52 MB/s", refresh=False)
    bar.close()
    bar.close()  # closing twice writes nothing more
    lines = log.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("record demo: done, 1.00M/1.00M tok in ") and lines[0].endswith("[52 MB/s]")


def test_a_long_step_writes_a_line_every_interval(monkeypatch):
    monkeypatch.delenv("NEUROBROWSE_PROGRESS", raising=False)
    log = io.StringIO()
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = progress.progress_bar(total=10, desc="train gelu", unit="step", stream=log)
    for _ in range(10):
        clock[0] += progress.LOG_EVERY_S / 2  # two updates per interval
        bar.update(1)
    bar.set_postfix(loss="3.42")
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 6  # one per interval while running, then the end
    assert lines[0] == "train gelu: running, 2/10 (20%) step in 60.0 s, 0.03 step/s"
    assert lines[-1] == "train gelu: done, 10/10 step in 300.0 s, 0.03 step/s [loss=3.42]"
    cut = progress.progress_bar(total=10, desc="index", unit="tok", stream=log)
    cut.update(4)
    cut.close()  # an error or Ctrl-C closes the bar too: it says where the step stopped
    assert log.getvalue().splitlines()[-1] == "index: stopped, 4/10 (40%) tok in 0.0 s"


def test_a_terminal_gets_tqdm_and_the_switch_and_quiet_override(monkeypatch):
    from tqdm import tqdm

    monkeypatch.delenv("NEUROBROWSE_PROGRESS", raising=False)
    bar = progress.progress_bar(total=3, desc="x", stream=_Tty())
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setenv("NEUROBROWSE_PROGRESS", "lines")
    assert isinstance(progress.progress_bar(total=3, stream=_Tty()), progress.LineProgress)
    monkeypatch.setenv("NEUROBROWSE_PROGRESS", "bar")
    bar = progress.progress_bar(total=3, stream=io.StringIO())
    assert isinstance(bar, tqdm)
    bar.close()
    quiet = io.StringIO()
    off = progress.progress_bar(total=3, enabled=False, stream=quiet)
    off.update(3)
    off.reset(total=5)
    off.close()
    assert quiet.getvalue() == ""


def test_every_progress_bar_of_the_project_goes_through_the_helper():
    """No module but store/progress.py builds a tqdm bar itself (so none floods a log)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = [str(p.relative_to(root)) for pkg in ("store", "solu_core", "neurobrowse")
                 for p in (root / pkg).rglob("*.py")
                 if p.name != "progress.py" and "tqdm" in p.read_text()]
    assert offenders == []


def test_index_of_a_store_with_a_partial_last_chunk_ends_done_not_stopped(tmp_path, monkeypatch, capsys):
    """The bar's total is the store's n_tokens, not the chunk capacity (n_chunks x chunk_tokens):
    a finished index of 640 tokens in chunks of 256 says "done, 640/640", never "stopped"."""
    import numpy as np

    from store.index.run import IndexConfig, index_hook
    from store.index.source import open_store
    from tests.helpers import write_synthetic_store

    monkeypatch.setenv("NEUROBROWSE_PROGRESS", "lines")
    rng = np.random.default_rng(0)
    acts = {"blocks.0.mlp.hook_post": rng.standard_normal((640, 16)).astype(np.float16)}
    path = write_synthetic_store(tmp_path / "s", acts, rng.integers(0, 50, 640).astype(np.int32), vocab=50,
                                 context_len=32, chunk_tokens=256)
    capsys.readouterr()
    index_hook(open_store(path), "blocks.0.mlp.hook_post", IndexConfig(k=4), progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("blocks.0.mlp.hook_post")]
    reads = [ln for ln in lines if ln.startswith("blocks.0.mlp.hook_post read")]
    assert len(reads) == 1 and reads[0].startswith("blocks.0.mlp.hook_post read: done, 640/640 tok in "), lines
    assert lines[-1].startswith("blocks.0.mlp.hook_post finalize (index, explanations): done, 16/16 neuron"), lines


def test_index_into_a_log_file_writes_one_line_per_step_and_no_redraws(tmp_path):
    """A real `neurobrowse index` with stderr sent to a file (not a terminal, no override): per hook one
    line for the read and one for finalize (the index arrays, explanations, writes), each ending in
    'done', no carriage returns or escape codes; `--quiet` writes none."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from tests.helpers import write_synthetic_store

    rng = np.random.default_rng(1)
    hooks = ("blocks.0.mlp.hook_post", "blocks.0.mlp.hook_pre")
    acts = {h: rng.standard_normal((1024, 16)).astype(np.float16) for h in hooks}
    path = write_synthetic_store(tmp_path / "s", acts, rng.integers(0, 50, 1024).astype(np.int32), vocab=50,
                                 context_len=32, chunk_tokens=128)
    env = {k: v for k, v in os.environ.items() if k != "NEUROBROWSE_PROGRESS"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    for quiet in (False, True):
        log = tmp_path / f"log{int(quiet)}.txt"
        with open(log, "w") as err:  # a plain file: isatty() is False
            r = subprocess.run([sys.executable, "-m", "neurobrowse", "index", str(path), "--k", "4", "--force",
                                *(["--quiet"] if quiet else [])], stdout=subprocess.PIPE, stderr=err, text=True,
                               env=env)
        text = log.read_text()
        assert r.returncode == 0, text
        assert "\r" not in text and "\x1b" not in text, repr(text[:300])
        lines = [ln for ln in text.splitlines() if ln.startswith(hooks)]
        if quiet:
            assert lines == [], text
            continue
        for h in hooks:
            mine = [ln for ln in lines if ln.startswith(h + " ")]
            steps = [ln.split(":")[0] for ln in mine]
            assert steps[0] == f"{h} read" and steps[-1] == f"{h} finalize (index, explanations)", mine
            assert len(mine) == len(set(steps)) <= 3, mine  # read, (pass 2 when needed), finalize: once each
            assert all(": done, " in ln for ln in mine), mine
            assert mine[0].startswith(f"{h} read: done, 1.02k/1.02k tok in "), mine
            assert mine[-1].startswith(f"{h} finalize (index, explanations): done, 16/16 neuron in "), mine
