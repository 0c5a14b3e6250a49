"""Render a blinded study (study.json or study.json.gz, never the key) as plain text for a rater:

    python3 render_for_rater.py STUDY/study.json[.gz] OUT.txt

What a rater reads depends only on each item's relative activations above zero (as the paper's raters saw):
no raw values, no item maximum, no per-model scale, negative activations shown as zero. Two items with the
same tokens and the same relative activations give the same text, whatever their model and scale
(tests/test_study_blind.py). Needs only the Python standard library.
"""
import gzip
import json
import sys

HEADER = [
    "Format: each item is one neuron (or feature); each numbered line is one passage where it fires strongly.",
    "The firing token (the one the passage was chosen for) is shown as <<tok>>. Other tokens that also fire",
    "(at >= 20% of the item's strongest firing) are shown as [tok|N], N = 1..9 the relative strength",
    "(9 = as strong as the item's strongest). \u23ce marks a newline; spaces are literal.",
]


def load(path):
    with (gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8")) as f:
        return json.load(f)


def render_item(item):
    """One item's lines: the passages with the firing token and the other strong tokens marked."""
    sn = item["snippets"]
    mx = max((max((max(float(a), 0.0) for a in s["acts"]), default=0.0) for s in sn), default=0.0) or 1.0
    out = []
    for i, s in enumerate(sn):
        parts = []
        for j, (t, a) in enumerate(zip(s["tokens"], s["acts"])):
            t = t.replace("\n", "\u23ce")
            a = max(float(a), 0.0)
            if j == s["center"]:
                parts.append(f"<<{t}>>")
            elif a >= 0.2 * mx:
                parts.append(f"[{t}|{min(9, max(1, round(9 * a / mx)))}]")
            else:
                parts.append(t)
        out.append(f"{i + 1:2d}: " + "".join(parts))
    return out


def render(doc):
    """The whole study as the text a rater gets."""
    out = [doc["rule"], "", *HEADER, ""]
    for it in doc["items"]:
        out.append(f"=== item {it['item_id']} ===")
        out += render_item(it)
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python3 render_for_rater.py STUDY/study.json[.gz] OUT.txt")
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(render(load(sys.argv[1])))
