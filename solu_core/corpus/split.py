"""Deduplicating documents by content hash, mixing prose and code to a share, and splitting train/val
*by document*, in an order from seeded hashes of each document's content (deterministic for a seed,
independent of file-system order).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from store.errors import CorpusError
from solu_core.corpus.config import CorpusConfig
from solu_core.corpus.sources import _Doc, _SourceStats, _split_long


def _seeded_key(purpose: str, seed: int, sha: str) -> int:
    """A uniform 64-bit number from (purpose, seed, content hash): stable whatever else is in the corpus."""
    return int.from_bytes(hashlib.sha256(f"{purpose}:{seed}:{sha}".encode()).digest()[:8], "big")


def _kind_of(stats: _SourceStats) -> str:
    """'code' (the stdlib source), 'prose' (a prose source) or 'other' (a source you gave)."""
    return "code" if stats.kind == "stdlib" else "prose" if stats.kind.startswith("prose:") else "other"


def _mix(parts: list[_Doc], stats: list[_SourceStats], share: float) -> list[_Doc]:
    """Keep documents (in their seeded order) so prose is ``share`` of the prose + code bytes: the
    more plentiful kind is capped at what the other allows. Other sources are kept whole."""
    size = {k: sum(len(p.text.encode("utf-8")) for p in parts if _kind_of(stats[p.source]) == k)
            for k in ("code", "prose")}
    if not size["code"] or not size["prose"]:
        return parts
    budget = {"code": size["prose"] * (1 - share) / share, "prose": size["code"] * share / (1 - share)}
    budget = {k: min(size[k], budget[k]) for k in budget}
    kept = []
    for p in parts:
        k = _kind_of(stats[p.source])
        n = len(p.text.encode("utf-8"))
        if k == "other" or n <= budget[k]:
            kept.append(p)
            if k != "other":
                budget[k] -= n
        else:
            stats[p.source].capped += 1
    return kept


def mix_of(stats: list[dict] | list[_SourceStats]) -> dict:
    """Bytes per kind (code / prose / other) and the prose share of prose + code, from a manifest's sources."""
    rows = [asdict(s) if isinstance(s, _SourceStats) else s for s in stats]
    by = {"code": 0, "prose": 0, "other": 0}
    for r in rows:
        by[_kind_of(_SourceStats(r["path"], r["kind"]))] += int(r["bytes"])
    pc = by["code"] + by["prose"]
    return {**{f"{k}_bytes": v for k, v in by.items()}, "prose_share": by["prose"] / pc if pc else None,
            "generated_left_out": sum(int(r.get("skipped_generated", 0)) for r in rows)}


def _dedup_and_split(cfg: CorpusConfig, docs: list[_Doc], stats: list[_SourceStats]) -> dict[str, list[_Doc]]:
    seen: set[str] = set()
    unique: list[_Doc] = []
    for d in docs:
        d.sha256 = hashlib.sha256(d.text.encode("utf-8")).hexdigest()
        if d.sha256 in seen:
            stats[d.source].duplicates += 1
            continue
        seen.add(d.sha256)
        unique.append(d)
    parts = [p for d in unique for p in _split_long(d, cfg.max_doc_chars)]
    for p in parts:
        p.sha256 = p.sha256 or hashlib.sha256(p.text.encode("utf-8")).hexdigest()
        p.key = _seeded_key("order", cfg.seed, p.sha256)
        p.split_key = _seeded_key("split", cfg.seed, p.sha256)
    parts.sort(key=lambda p: (p.key, p.sha256))  # a seeded shuffle that does not depend on read order
    if cfg.prose_share is not None:
        parts = _mix(parts, stats, cfg.prose_share)
    if cfg.max_mb is not None:
        budget, kept = int(cfg.max_mb * 1e6), []
        for p in parts:  # greedy fill in the seeded order: documents that do not fit are passed over
            n = len(p.text.encode("utf-8"))
            if n <= budget:
                kept.append(p)
                budget -= n
        parts = kept
    if len(parts) < 2:
        where = ", ".join(s.path for s in stats) or "(no sources)"
        skipped = sum(s.skipped_binary for s in stats), sum(s.skipped_non_utf8 for s in stats)
        raise CorpusError(
            f"the corpus is empty or has fewer than 2 documents (sources: {where}; skipped "
            f"{skipped[0]} binary and {skipped[1]} non-UTF-8 files); point --source at more UTF-8 text"
        )
    # Val = documents in ascending split_key order until they hold val_fraction of the text bytes;
    # split_key is independent of the order key, so the --max-mb subset and the split do not correlate.
    by_split_key = sorted(parts, key=lambda p: (p.split_key, p.sha256))
    want, held, n_val = cfg.val_fraction * sum(len(p.text) for p in parts), 0, 0
    while n_val < len(parts) - 1 and (n_val == 0 or held < want):
        held += len(by_split_key[n_val].text)
        n_val += 1
    val_ids = {id(p) for p in by_split_key[:n_val]}
    split = {"train": [p for p in parts if id(p) not in val_ids], "val": [p for p in parts if id(p) in val_ids]}
    for name, ds in split.items():
        for d in ds:
            stats[d.source].split[name] += 1
    for i, st in enumerate(stats):
        mine = sorted(p.sha256 for p in parts if p.source == i)
        st.n_docs = len(mine)
        st.bytes = sum(len(p.text.encode("utf-8")) for p in parts if p.source == i)
        st.sha256 = hashlib.sha256("".join(mine).encode()).hexdigest()
    return split
