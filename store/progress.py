"""The one progress bar every long step of neurobrowse goes through (training, tokenizing, recording,
indexing, verifying, exporting, Dask work).

In a terminal it is a tqdm bar. When the output is not a terminal (``make demo > log``, a batch job,
a CI log) a redrawing bar would write a line per redraw (~0.5 MB for a demo), so it writes plain
lines instead: one when the step ends (what it did, how long it took, the rate), and one every
``LOG_EVERY_S`` seconds while a long step runs, so a log shows it is alive.

    bar = progress_bar(total=n, desc="record demo", unit="tok", unit_scale=True, enabled=progress)
    bar.update(k); bar.set_postfix_str("52 MB/s"); bar.close()

``NEUROBROWSE_PROGRESS=lines`` (or ``bar``) forces one or the other whatever the output is.
"""

from __future__ import annotations

import os
import sys
import time

LOG_EVERY_S = 60.0  # seconds between two lines of a running step when the output is not a terminal


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _fmt(n: float, unit_scale: bool) -> str:
    if not unit_scale:
        return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.2f}"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:.0f}"


class LineProgress:
    """tqdm's interface (update, set_description, set_postfix, set_postfix_str, reset, close, n, total)
    for output that is not a terminal: a line at the end of the step and one every ``every_s`` seconds."""

    def __init__(self, total=None, *, desc: str = "", unit: str = "it", unit_scale: bool = False, initial: int = 0,
                 stream=None, every_s: float = LOG_EVERY_S):
        self.total, self.desc, self.unit, self.unit_scale = total, desc, unit, unit_scale
        self.n = initial
        self.initial = initial
        self.stream = stream
        self.every_s = every_s
        self.postfix = ""
        self.t0 = self.last = time.monotonic()
        self.closed = False

    # the parts of tqdm's interface the project uses
    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._line(done=False)

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        kv = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in kv.items())

    def reset(self, total=None) -> None:
        """Start the next phase of the step (e.g. pass 2): the phase before gets its line."""
        if self.n > self.initial:
            self._line(done=True)
        self.n = self.initial = 0
        if total is not None:
            self.total = total
        self.t0 = self.last = time.monotonic()

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._line(done=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self, done: bool) -> None:
        el = time.monotonic() - self.t0
        did = self.n - self.initial
        unit = self.unit
        amount = _fmt(self.n, self.unit_scale)
        if self.total:
            amount += f"/{_fmt(self.total, self.unit_scale)}"
            if self.n < self.total:
                amount += f" ({self.n / self.total:.0%})"
        rate = f", {_fmt(did / el, self.unit_scale)} {unit}/s" if el > 0 and did > 0 else ""
        head = f"{self.desc}: " if self.desc else ""
        state = "running" if not done else "done" if not self.total or self.n >= self.total else "stopped"
        tail = f" [{self.postfix}]" if self.postfix else ""
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"{head}{state}, {amount} {unit} in {el:.1f} s{rate}{tail}", file=stream, flush=True)


class _Off(LineProgress):
    """A bar that writes nothing (progress turned off)."""

    def _line(self, done: bool) -> None:
        pass


def progress_bar(total=None, *, desc: str = "", unit: str = "it", unit_scale: bool = False, initial: int = 0,
                 enabled: bool = True, stream=None):
    """A progress bar for one step: a tqdm bar when ``stream`` (default stderr) is a terminal, else a
    ``LineProgress`` (a few plain lines); one that writes nothing when not ``enabled``."""
    if not enabled:
        return _Off(total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial)
    out = stream if stream is not None else sys.stderr
    mode = os.environ.get("NEUROBROWSE_PROGRESS", "").strip().lower()
    if mode == "lines" or (mode != "bar" and not _is_terminal(out)):
        return LineProgress(total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial, stream=stream)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial, dynamic_ncols=True,
                file=stream)


__all__ = ["LOG_EVERY_S", "LineProgress", "progress_bar"]
