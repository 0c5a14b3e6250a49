"""Every relative link in README.md, docs/ and benchmarks/*.md leads somewhere: the file exists and, for a
link into a Markdown file, so does the heading its #anchor names (GitHub's anchors: lower case, punctuation
dropped, spaces to hyphens, -1, -2 for repeats)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def _anchors(md: Path) -> set[str]:
    out, seen = set(), {}
    for line in FENCE.sub("", md.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_relative_links_resolve():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "benchmarks").glob("*.md"))]
    bad = []
    for f in files:
        for m in LINK.finditer(FENCE.sub("", f.read_text(encoding="utf-8"))):
            url = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", url):  # http:, https:, mailto: ...
                continue
            path, _, anchor = url.partition("#")
            target = (f.parent / path) if path else f
            if not target.exists():
                bad.append(f"{f.relative_to(ROOT)}: {url} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                bad.append(f"{f.relative_to(ROOT)}: {url} (no heading #{anchor} in {target.name})")
    assert len(files) > 10 and not bad, "\n".join(bad)
