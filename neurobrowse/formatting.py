"""How numbers are written for people, the same in the CLI and the app.

Sizes are binary (1 KiB = 1024 bytes) and say so in their unit; statistics use the format of their
column in ``store.measures.columns``.
"""

from __future__ import annotations

import math

from store.measures.columns import format_value as format_stat

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    """A size in bytes with a binary unit: 512 B, 1.5 KiB, 8.0 MiB, 2.0 GiB."""
    n = float(n)
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def percent(x: float, digits: int = 0) -> str:
    """A share as a percentage: 0.391 -> '39%'; NaN -> '—'."""
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


__all__ = ["human_bytes", "percent", "format_stat"]
