"""Argument types shared by every verb: one place that refuses bad option values before any work starts.

Each is an argparse ``type=`` callable: a bad value raises ``argparse.ArgumentTypeError`` and the CLI
exits 2 with ``error: argument --NAME: ...`` (no traceback, nothing written).
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

ArgumentTypeError = argparse.ArgumentTypeError


def _int(text: str) -> int:
    try:
        return int(str(text).replace("_", ""))
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """A whole number >= 1 (sizes, counts, steps)."""
    v = _int(text)
    if v < 1:
        raise ArgumentTypeError(f"{v} must be at least 1")
    return v


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (layer and neuron numbers, seeds)."""
    v = _int(text)
    if v < 0:
        raise ArgumentTypeError(f"{v} must be 0 or more")
    return v


def finite_float(text: str) -> float:
    """A real number (not nan, not inf)."""
    try:
        v = float(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def positive_float(text: str) -> float:
    v = finite_float(text)
    if v <= 0:
        raise ArgumentTypeError(f"{v:g} must be more than 0")
    return v


def non_negative_float(text: str) -> float:
    v = finite_float(text)
    if v < 0:
        raise ArgumentTypeError(f"{v:g} must be 0 or more")
    return v


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    v = finite_float(text)
    if not 0 < v < 1:
        raise ArgumentTypeError(f"{v:g} must be between 0 and 1")
    return v


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device(text: str) -> str:
    """auto, cpu, mps, cuda or cuda:N; a CUDA device is refused when torch sees no such GPU."""
    text = str(text).strip().lower()
    if not _DEVICE.match(text):
        raise ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
    if text.startswith("cuda"):
        try:
            import torch
        except ImportError:
            raise ArgumentTypeError(f"{text}: torch is not installed (pip install neurobrowse[model])") from None
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.split(":")[1]) if ":" in text else 0
        if index >= n:
            have = f"this machine has {n} CUDA device(s)" if n else "torch sees no CUDA GPU on this machine"
            raise ArgumentTypeError(f"{text}: {have}; use --device cpu (or auto)")
    if text == "mps":
        try:
            import torch
        except ImportError:
            raise ArgumentTypeError("mps: torch is not installed (pip install neurobrowse[model])") from None
        if not torch.backends.mps.is_available():
            raise ArgumentTypeError("mps: not available on this machine; use --device cpu (or auto)")
    return text


def _writable_parent(p: Path) -> None:
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ArgumentTypeError(f"{p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArgumentTypeError(f"{p}: the folder {parent} is not writable; choose another place")


def output_dir(text: str) -> Path:
    """A folder to create or write into: not an existing file, not a dangling link, in a writable place."""
    p = Path(text).expanduser()
    if p.is_symlink() and not p.exists():
        raise ArgumentTypeError(f"{p} is a link to {os.readlink(p)}, which does not exist")
    if p.exists() and not p.is_dir():
        raise ArgumentTypeError(f"{p} is a file; name a folder (it is created)")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise ArgumentTypeError(f"{p} is not writable; choose another folder")
    else:
        _writable_parent(p)
    return p


def output_file(text: str) -> Path:
    """A file to (over)write: not a folder, not a dangling link, in a writable folder."""
    p = Path(text).expanduser()
    if p.is_symlink() and not p.exists():
        raise ArgumentTypeError(f"{p} is a link to {os.readlink(p)}, which does not exist")
    if p.is_dir():
        raise ArgumentTypeError(f"{p} is a folder; name a file")
    if p.exists() and not p.is_file():  # writing "to" /dev/full or a FIFO would replace or block on it
        raise ArgumentTypeError(f"{p} is not a regular file (a device, FIFO or socket); name a regular file")
    _writable_parent(p)
    return p


def input_text_file(text: str) -> Path:
    """An existing, readable text file, plain or gzipped (answers, imports)."""
    p = Path(text).expanduser()
    if not p.is_file():
        raise ArgumentTypeError(f"{p} is not a file" if p.exists() else f"{p} does not exist")
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise ArgumentTypeError(f"{p} cannot be read ({e.strerror})") from None
    if b"\0" in head and not head.startswith(b"\x1f\x8b"):
        raise ArgumentTypeError(f"{p} is a binary file, not text")
    return p


def hook_name(text: str) -> str:
    """A full MLP hook name (blocks.L.mlp.hook_post / hook_mid)."""
    from store.schema import parse_hook_name

    try:
        parse_hook_name(text)
    except ValueError as e:
        raise ArgumentTypeError(str(e)) from None
    return text
