"""Building a corpus folder: token shards, documents.jsonl, tokenizer.json and manifest.json, written in
a temporary sibling folder and swapped into place at the end (store.format.atomic.swap_in), so a
crash or a bad input never leaves a half-written corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
import numpy as np
from store.errors import CorpusError
from store.format import atomic
from solu_core.corpus.config import CorpusConfig, EOT, FORMAT, FORMAT_VERSION, SPLITS
from solu_core.corpus.sources import STDLIB_EXCLUDE, _Doc, _collect
from solu_core.corpus.folder import read_manifest
from solu_core.corpus.split import _dedup_and_split, mix_of
from solu_core.corpus.bpe import _token_dtype, eot_id, load_tokenizer_file, train_tokenizer


def _write_split(tmp: Path, name: str, docs: list[_Doc], tok, cfg: CorpusConfig, progress: bool) -> dict:
    """Tokenize documents in order and write [<|endoftext|>, doc...] into shards."""
    from store.progress import progress_bar

    (tmp / name).mkdir()
    dtype = _token_dtype(tok.get_vocab_size())
    eot = eot_id(tok)
    shards: list[dict] = []
    buf: list[np.ndarray] = []
    offs: list[int] = []
    n_buf = 0
    n_total = 0

    def flush() -> None:
        nonlocal buf, offs, n_buf
        if not n_buf:
            return
        i = len(shards)
        arr = np.concatenate(buf).astype(dtype)
        np.save(tmp / name / f"tokens_{i:05d}.npy", arr)
        np.save(tmp / name / f"doc_offsets_{i:05d}.npy", np.asarray(offs, dtype=np.int64))
        shards.append({"tokens": f"{name}/tokens_{i:05d}.npy", "n_tokens": int(len(arr)), "n_docs": len(offs)})
        buf, offs, n_buf = [], [], 0

    batch = 256
    bar = progress_bar(total=len(docs), desc=f"tokenizing {name}", unit="doc", enabled=progress)
    for b in range(0, len(docs), batch):
        encs = tok.encode_batch([d.text for d in docs[b : b + batch]], add_special_tokens=False)
        for enc in encs:
            ids = np.asarray([eot] + enc.ids, dtype=np.int64)  # [1 + doc_len]
            if n_buf and n_buf + len(ids) > cfg.shard_tokens:
                flush()
            offs.append(n_buf)
            buf.append(ids)
            n_buf += len(ids)
            n_total += len(ids)
        bar.update(len(encs))
    bar.close()
    flush()
    return {"n_docs": len(docs), "n_tokens": n_total, "shards": shards}


def build_corpus(out_dir: str | Path, cfg: CorpusConfig | None = None, progress: bool = True,
                 force: bool = False) -> dict:
    """Build a corpus into ``out_dir`` and return its manifest.

    An existing corpus built from the same config is reused as is (a second ``make demo`` starts
    in seconds); one built from another config is an error unless ``force``. The work happens in a
    temporary sibling directory renamed into place at the end.
    """
    cfg = cfg or CorpusConfig()
    out = Path(out_dir).expanduser().resolve()
    if (out / "manifest.json").exists() and not force:
        old = read_manifest(out)
        if old.get("config") == _config_record(cfg):
            return old
        raise CorpusError(
            f"{out} already holds a corpus built with other settings; "
            "pass --force to replace it or choose another --out"
        )
    if out.exists() and not (out / "manifest.json").exists() and any(out.iterdir()):
        raise CorpusError(f"{out} exists and is not a corpus; choose another --out or remove it")

    docs, stats = _collect(cfg)
    split = _dedup_and_split(cfg, docs, stats)
    del docs

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if cfg.tokenizer_file:
            tok = load_tokenizer_file(cfg.tokenizer_file)
        else:
            tok = train_tokenizer([d.text for d in split["train"]], cfg.vocab_size, progress)
        tok_json = tok.to_str()
        (tmp / "tokenizer.json").write_text(tok_json, encoding="utf-8")
        splits = {name: _write_split(tmp, name, split[name], tok, cfg, progress) for name in SPLITS}
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
            for name in SPLITS:
                for d in split[name]:
                    rec = {"source": d.source, "name": d.name, "sha256": d.sha256,
                           "bytes": len(d.text.encode("utf-8")), "split": name}
                    f.write(json.dumps(rec) + "\n")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": _config_record(cfg),
            "python": sys.version.split()[0],
            "stdlib_exclude": sorted(STDLIB_EXCLUDE) if cfg.include_stdlib else [],
            "sources": [asdict(s) for s in stats],
            "counts": {
                "documents": sum(len(v) for v in split.values()),
                "bytes": sum(s.bytes for s in stats),
                "duplicates": sum(s.duplicates for s in stats),
                "skipped_binary": sum(s.skipped_binary for s in stats),
                "skipped_non_utf8": sum(s.skipped_non_utf8 for s in stats),
                "skipped_empty": sum(s.skipped_empty for s in stats),
                "skipped_generated": sum(s.skipped_generated for s in stats),
            },
            "mix": {**mix_of(stats), "target_prose_share": cfg.prose_share},
            "splits": splits,
            "tokenizer": {
                "file": "tokenizer.json",
                "vocab_size": tok.get_vocab_size(),
                "eot_token": EOT,
                "eot_id": eot_id(tok),
                "sha256": hashlib.sha256(tok_json.encode("utf-8")).hexdigest(),
            },
            "token_dtype": _token_dtype(tok.get_vocab_size()).name,
        }
        _write_json_atomic(tmp / "manifest.json", manifest)
        atomic.swap_in(tmp, out)  # --force over an old corpus: swap, then delete the old one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _config_record(cfg: CorpusConfig) -> dict:
    d = asdict(cfg)
    d["sources"] = [str(Path(s).expanduser().resolve()) for s in cfg.sources]
    if cfg.tokenizer_file:  # the file's content, so a changed tokenizer is a changed config
        p = Path(cfg.tokenizer_file).expanduser().resolve()
        d["tokenizer_file"] = str(p)
        d["tokenizer_sha256"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    else:
        d.pop("tokenizer_file")
    return d


def _write_json_atomic(path: Path, obj) -> None:
    atomic.write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")
