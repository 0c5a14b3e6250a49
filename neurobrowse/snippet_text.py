"""How a snippet's tokens become text on screen, without Qt (the snippet view draws these runs).

A token's readable piece (store.measures.tokens_display: a newline is ``⏎``, a tab ``⇥``, a carriage return
``␍``) is cut into runs:

* ``text``: characters shaded by the token's activation (a single space inside a word piece, as in
  ``" the"``, belongs to its text);
* ``space``: indentation and other runs of whitespace (or a token that is only whitespace): never
  shaded as a block, so a GeLU neuron's indentation tokens cannot become long bars hiding the firing
  token; the view underlines them thinly in the token's colour;
* ``eol``: a small end-of-line mark ``↵`` that carries the newline token's shading (hovering it shows
  the token's value), followed by a ``break`` run (a real line break): code keeps its lines and
  indentation, prose still wraps at the view's width;
* ``mark``: a firing token that is only whitespace gets a visible ``·`` so it can be spotted.

Every run keeps the index of its token, so hover text, shading and highlights stay per token.
``Style`` says how a token is drawn: its shade, whether it is the firing token, greyed (outside the
context the model saw, no activation) or highlighted (a search match: ``highlights`` are token ranges).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

EOL_MARK = "\u21b5"  # ↵ drawn where a newline token ends a line
BREAK = "\u2028"  # a line break inside one paragraph (Qt: QChar::LineSeparator)
TAB = "    "  # a tab is shown as four spaces
SPACE_MARK = "\u00b7"  # · stands in for a firing token that is only whitespace

NEWLINE, TABCHAR, CR = "\u23ce", "\u21e5", "\u240d"  # as store.measures.tokens_display writes them


@dataclass(frozen=True)
class Run:
    text: str
    token: int  # index of the token in the snippet
    kind: str  # "text" | "space" | "eol" | "break" | "mark"


def token_runs(piece: str, token: int, firing: bool = False) -> list[Run]:
    """One token's readable piece as runs (see the module docstring)."""
    chars: list[tuple[str, str]] = []  # (char, kind)
    for ch in piece:
        if ch == NEWLINE:
            chars += [(EOL_MARK, "eol"), (BREAK, "break")]
        elif ch == TABCHAR:
            chars += [(c, "space") for c in TAB]
        elif ch in (CR, "\r"):
            continue
        elif ch == "\n":
            chars += [(EOL_MARK, "eol"), (BREAK, "break")]
        elif ch.isspace():
            chars.append((" ", "space"))
        else:
            chars.append((ch, "text"))
    # a lone space next to text is part of the word piece (" the"), shaded with it
    for i, (ch, kind) in enumerate(chars):
        if kind == "space":
            prev_space = i > 0 and chars[i - 1][1] == "space"
            next_space = i + 1 < len(chars) and chars[i + 1][1] == "space"
            touches_text = (i > 0 and chars[i - 1][1] == "text") or (i + 1 < len(chars) and chars[i + 1][1] == "text")
            if touches_text and not prev_space and not next_space:
                chars[i] = (ch, "text")
    runs: list[Run] = []
    for ch, kind in chars:
        if runs and runs[-1].kind == kind and kind in ("text", "space"):
            runs[-1] = Run(runs[-1].text + ch, token, kind)
        else:
            runs.append(Run(ch, token, kind))
    if firing and not any(r.kind in ("text", "eol") for r in runs):
        runs.insert(0, Run(SPACE_MARK, token, "mark"))
    return runs


def snippet_runs(tokens: Sequence[str], firing: Iterable[int] = ()) -> list[Run]:
    """Every token of a snippet as runs, in order."""
    fire = set(firing)
    out: list[Run] = []
    for i, piece in enumerate(tokens):
        out += token_runs(piece, i, i in fire)
    return out


def highlighted(n_tokens: int, ranges: Iterable[tuple[int, int]]) -> list[bool]:
    """Per token: inside one of the [lo, hi) token ranges."""
    out = [False] * n_tokens
    for lo, hi in ranges:
        for i in range(max(0, lo), min(n_tokens, hi)):
            out[i] = True
    return out


SHADE_LEVELS = 64  # shades per sign; more are not told apart by eye, fewer formats render faster


def shade_rgb(value: float, scale: float) -> tuple[int, int, int]:
    """Background colour for a token: white -> red as value goes 0 -> scale (the paper's shading);
    negative values shade blue. ``scale`` is the largest |activation| of the list shown."""
    if not (scale > 0) or not math.isfinite(value):
        return (255, 255, 255)
    t = round(min(abs(value) / scale, 1.0) * SHADE_LEVELS) / SHADE_LEVELS  # quantised: a few colours per page
    fade = int(round(255 * (1.0 - 0.85 * t)))  # keep the darkest shade readable with black text
    return (255, fade, fade) if value >= 0 else (fade, fade, 255)


def range_text(lo: float, hi: float) -> str:
    """An activation range for a bin header, e.g. 'activations 0.52 to 1.9'."""
    def f(x: float) -> str:
        return "—" if not math.isfinite(x) else f"{x:.3g}"
    return f"activations {f(lo)} to {f(hi)}"


def bin_title(name: str, lo: float, hi: float) -> str:
    """The header of a quantile-sample bin: which quantiles and which activations it holds."""
    if name == "random":
        return f"random tokens ({range_text(lo, hi)})"
    a, b = name.split("-")
    return f"quantile {a}–{b} ({range_text(lo, hi)})"


def raw_text(pieces: Sequence[str]) -> str:
    """Readable pieces (store.tokens_display) back to the text they stand for: the newline, tab and carriage
    return marks become the real characters and byte marks ``⟨e2⟩`` the bytes, decoded as UTF-8 across pieces."""
    return "".join(decode_pieces([p.replace(NEWLINE, "\n").replace(TABCHAR, "\t").replace(CR, "\r")
                                  for p in pieces]))


_BYTE = re.compile("\u27e8([0-9a-f]{2})\u27e9")


def decode_pieces(pieces: Sequence[str]) -> list[str]:
    """Pieces with byte marks (``⟨c3⟩``, a UTF-8 character split over tokens) decoded across neighbouring
    pieces: 'Fran⟨c3⟩' + '⟨a7⟩ois' -> 'Franç' + 'ois'. A decoded character goes to the piece holding its
    first byte; bytes that are not valid UTF-8 keep their marks. Pieces without marks are returned as they are."""
    out = list(pieces)
    i, n = 0, len(out)
    while i < n:
        if not _BYTE.search(out[i]):
            i += 1
            continue
        j = i
        while j + 1 < n and _BYTE.search(out[j + 1]):  # a run of neighbouring pieces with byte marks
            j += 1
        out[i:j + 1] = _decode_group(out[i:j + 1])
        i = j + 1
    return out


def _decode_group(group: list[str]) -> list[str]:
    raw, owner = bytearray(), []
    for k, piece in enumerate(group):
        pos = 0
        for m in _BYTE.finditer(piece):
            for ch in piece[pos:m.start()]:
                b = ch.encode("utf-8")
                raw += b
                owner += [k] * len(b)
            raw.append(int(m.group(1), 16))
            owner.append(k)
            pos = m.end()
        for ch in piece[pos:]:
            b = ch.encode("utf-8")
            raw += b
            owner += [k] * len(b)
    text = bytes(raw).decode("utf-8", errors="surrogateescape")
    out = [""] * len(group)
    at = 0
    for ch in text:
        if 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that is not part of a valid character: keep its mark
            out[owner[at]] += f"\u27e8{ord(ch) - 0xDC00:02x}\u27e9"
            at += 1
        else:
            out[owner[at]] += ch
            at += len(ch.encode("utf-8"))
    return out


VISIBLE_SPACE = "\u2423"  # ␣


def visible_token(piece: str) -> str:
    """A token for a list or table cell: a token that is only whitespace shows a mark per character (␣ for a
    space; ⏎ and ⇥ as they are), so it is never a blank cell; other tokens are shown as they are."""
    if piece and not piece.replace(NEWLINE, "").replace(TABCHAR, "").replace(CR, "").strip():
        return piece.replace(" ", VISIBLE_SPACE).replace("\u00a0", VISIBLE_SPACE)
    return piece
