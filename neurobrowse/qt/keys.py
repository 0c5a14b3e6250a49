"""The keyboard shortcuts of the app's windows, one list (F1 in the main and the compare window shows it).

Qt-free: the text only; each window binds its own keys.
"""

from __future__ import annotations

import html

KEYS_HELP = [
    ("J / Ctrl+Down", "next neuron (in the table's order)"),
    ("K / Ctrl+Up", "previous neuron"),
    ("] / Ctrl+PgDown", "next layer"),
    ("[ / Ctrl+PgUp", "previous layer"),
    ("M", "before / after LayerNorm (hook_mid <-> hook_post, SoLU-LN)"),
    ("E", "show the snippet under the mouse (or the first in view) in its whole context; E again folds it"),
    ("Ctrl+G", "jump to a neuron by number"),
    ("Alt+Left / Backspace", "back (the neuron shown before)"),
    ("Alt+Right / Shift+Backspace", "forward"),
    ("Ctrl+D", "bookmark the neuron"),
    ("Ctrl+F", "search top contexts (results strongest first)"),
    ("Ctrl+Shift+F", "filter expression"),
    ("1 / 2 / 3", "label: interpretable / not interpretable / unsure (label panel)"),
    ("Ctrl+L", "label: edit the description"),
    ("Ctrl+Z", "undo the last label change (the status bar names the neuron it changed)"),
    ("Ctrl+E", "try-your-text editor"),
    ("Ctrl+1 / Ctrl+2", "show / hide the neuron table / the try-your-text panel"),
    ("Ctrl+Shift+E", "export this neuron (JSONL, CSV or neuron-explainer)"),
    ("Ctrl+Shift+C", "copy the first snippet in view as text (each snippet's 'copy' link copies it)"),
    ("Ctrl+O", "open a store"),
    ("Ctrl+Q", "quit"),
    ("F1", "this list"),
    ("compare window: O", "the same neuron on the other model"),
    ("compare window: Ctrl+W", "close the compare window"),
    ("study window: 1 / 2 / 3", "rate: interpretable / not interpretable / unsure"),
    ("study window: U / Ctrl+Z", "undo the last rating"),
    ("study window: P / Space", "pause / resume"),
]


def keys_html() -> str:
    """The keys help as an HTML table (key and description escaped: "<->" stays text)."""
    rows = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(d)}</td></tr>"
                   for k, d in KEYS_HELP)
    return f"<table>{rows}</table>"
