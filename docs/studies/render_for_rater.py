"""Render a study.json (never key.json) as plain text for a blinded rater: python3 render_for_rater.py STUDY.json OUT.txt"""
import json, sys
d = json.load(open(sys.argv[1]))
out = [d["rule"], "",
       "Format: each snippet is one line. The firing token (the one this snippet was chosen for) is shown as <<tok>>.",
       "Other tokens with activation >= 20% of that item's max are shown as [tok|N] with N = 1..9 the shading level",
       "(9 = as strong as the max). \u23ce is a newline (followed by its indentation), \u00b7 is not used: spaces are literal.",
       ""]
for it in d["items"]:
    sn = it["snippets"]
    mx = max(max(s["acts"]) for s in sn) or 1.0
    out.append(f"=== item {it['item_id']} (max activation {mx:.2f}) ===")
    for i, s in enumerate(sn):
        parts = []
        for j, (t, a) in enumerate(zip(s["tokens"], s["acts"])):
            t = t.replace("\n", "\u23ce")
            if j == s["center"]:
                parts.append(f"<<{t}>>")
            elif a >= 0.2 * mx:
                parts.append(f"[{t}|{min(9, max(1, round(9 * a / mx)))}]")
            else:
                parts.append(t)
        ca = s["acts"][s["center"]]
        out.append(f"{i + 1:2d} ({ca:.2f}): " + "".join(parts))
    out.append("")
open(sys.argv[2], "w").write("\n".join(out))
