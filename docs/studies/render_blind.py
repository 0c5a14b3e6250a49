"""Render a study.json(.gz) (never key.json) as plain text for a blinded rater.
Only relative activations above zero are shown: no raw values, no per-model scale, negatives treated as zero.
python3 render_blind.py STUDY.json[.gz] OUT.txt"""
import gzip, json, sys
p = sys.argv[1]
d = json.load(gzip.open(p) if p.endswith(".gz") else open(p))
out = [d["rule"], "",
       "Format: each item is one neuron (or feature); each numbered line is one passage where it fires strongly.",
       "The firing token (the one the passage was chosen for) is shown as <<tok>>. Other tokens that also fire",
       "(at >= 20% of the item's strongest firing) are shown as [tok|N], N = 1..9 the relative strength",
       "(9 = as strong as the item's strongest). \u23ce marks a newline; spaces are literal.", ""]
for it in d["items"]:
    sn = it["snippets"]
    mx = max(max(max(a, 0.0) for a in s["acts"]) for s in sn) or 1.0
    out.append(f"=== item {it['item_id']} ===")
    for i, s in enumerate(sn):
        parts = []
        for j, (t, a) in enumerate(zip(s["tokens"], s["acts"])):
            t = t.replace("\n", "\u23ce")
            a = max(a, 0.0)
            if j == s["center"]:
                parts.append(f"<<{t}>>")
            elif a >= 0.2 * mx:
                parts.append(f"[{t}|{min(9, max(1, round(9 * a / mx)))}]")
            else:
                parts.append(t)
        out.append(f"{i + 1:2d}: " + "".join(parts))
    out.append("")
open(sys.argv[2], "w").write("\n".join(out))
