"""Readable token pieces for byte-level BPE vocabularies (GPT-2 style).

Byte-level BPE stores each byte as a printable stand-in character (space -> 'Ġ', newline -> 'Ċ',
...). For display we map the stand-ins back to bytes, decode UTF-8, and make whitespace visible:
a leading space stays a space, a newline shows as '⏎', a tab as '⇥'. Bytes that are only part of
a UTF-8 character (a multi-byte character split over tokens) show as '⟨e2⟩'.
"""

from __future__ import annotations

from functools import lru_cache

NEWLINE = "⏎"
TAB = "⇥"
CARRIAGE_RETURN = "␍"


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: stand-in character -> byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _visible(text: str) -> str:
    out = []
    for ch in text:
        if ch == "\n":
            out.append(NEWLINE)
        elif ch == "\t":
            out.append(TAB)
        elif ch == "\r":
            out.append(CARRIAGE_RETURN)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"⟨{ord(ch):02x}⟩")
        else:
            out.append(ch)
    return "".join(out)


def piece_bytes(piece: str) -> bytes | None:
    """The raw bytes of a byte-level BPE piece, or None when ``piece`` is not byte-level."""
    dec = byte_decoder()
    try:
        return bytes(dec[ch] for ch in piece)
    except KeyError:
        return None


def readable_piece(piece: str) -> str:
    """'Ġthe' -> ' the', 'Ċ' -> '⏎', 'âĢ' (half of '—') -> '⟨e2⟩⟨80⟩'."""
    raw = piece_bytes(piece)
    if raw is None:  # not byte-level (e.g. SentencePiece '▁' for a space)
        return _visible(piece.replace("▁", " "))
    out = []
    text = raw.decode("utf-8", errors="surrogateescape")
    for ch in text:
        if 0xDC80 <= ord(ch) <= 0xDCFF:  # an undecodable byte
            out.append(f"⟨{ord(ch) - 0xDC00:02x}⟩")
        else:
            out.append(_visible(ch))
    return "".join(out)


def readable_vocab(id_to_piece: dict[int, str], size: int) -> list[str]:
    """Readable strings for ids 0..size-1 (ids missing from the vocabulary show as '⟨id N⟩')."""
    return [readable_piece(id_to_piece[i]) if i in id_to_piece else f"⟨id {i}⟩" for i in range(size)]


def raw_piece(readable: str) -> str:
    """A readable piece back to the text it stands for, for files other tools read (JSONL and
    neuron-explainer exports): the newline, tab and carriage-return marks become the real characters.
    Bytes that are only part of a UTF-8 character keep their '⟨e2⟩' marks (a string cannot hold half a
    character)."""
    return readable.replace(NEWLINE, "\n").replace(TAB, "\t").replace(CARRIAGE_RETURN, "\r")
