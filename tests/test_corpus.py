"""The corpus: real stdlib text plus user sources, dedup, document split, tokenizer, shards, bad input."""

import json

import numpy as np
import pytest

from neurobrowse.cli import main
from solu_core.corpus.config import CorpusConfig, EOT
from solu_core.corpus.build import build_corpus
from solu_core.corpus.folder import corpus_manifest_hash, load_split, load_tokenizer
from solu_core.corpus.sources import stdlib_dir
from store.errors import CorpusError

STDLIB_SMALL = dict(max_mb=0.3, vocab_size=400)


@pytest.fixture
def user_folder(tmp_path):
    """A folder of real user-like text: prose, duplicates, a binary file, Latin-1 text, JSONL."""
    d = tmp_path / "texts"
    (d / "sub").mkdir(parents=True)
    for i in range(8):
        (d / f"note{i}.txt").write_text(
            f"Note {i}. The quick brown fox jumps over the lazy dog number {i}.\n" * (20 + i), encoding="utf-8"
        )
    (d / "sub" / "copy_of_note0.txt").write_text((d / "note0.txt").read_text())  # a duplicate
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))  # binary
    (d / "latin1.txt").write_bytes("café crème brûlée\n".encode("latin-1"))  # not UTF-8
    (d / "empty.txt").write_text("   \n")
    with open(d / "records.jsonl", "w", encoding="utf-8") as f:
        for i in range(5):
            f.write(json.dumps({"id": i, "text": f"Record {i} says hello to the world, again and again. " * 10}) + "\n")
    return d


def test_stdlib_source_without_tests(tmp_path):
    m = build_corpus(tmp_path / "c", CorpusConfig(max_mb=2, vocab_size=300), progress=False)
    assert m["sources"][0]["path"] == str(stdlib_dir()) and m["sources"][0]["kind"] == "stdlib"
    docs = [json.loads(line) for line in (tmp_path / "c" / "documents.jsonl").read_text().splitlines()]
    names = [d["name"] for d in docs]
    assert len(names) > 30 and all(n.split("#")[0].endswith(".py") for n in names)
    parts = {p for n in names for p in n.split("/")[:-1]}
    assert not parts & {"test", "tests", "idlelib", "site-packages"}, parts
    # code and docstrings: the val split decodes back to real Python source
    tok = load_tokenizer(tmp_path / "c")
    text = tok.decode([int(t) for t in load_split(tmp_path / "c", "val").tokens])
    assert "def " in text and '"""' in text
    assert not any(n.startswith("_sysconfigdata") for n in names)  # a generated file, not source


def test_user_sources_dedup_split_and_skip_counts(tmp_path, user_folder):
    cfg = CorpusConfig(sources=[str(user_folder)], include_stdlib=False, vocab_size=300, val_fraction=0.2)
    m = build_corpus(tmp_path / "c", cfg, progress=False)
    (src,) = m["sources"]
    assert src["kind"] == "folder"
    assert src["duplicates"] == 1
    assert src["skipped_binary"] == 1
    assert src["skipped_non_utf8"] == 1
    assert src["skipped_empty"] == 1
    assert src["n_docs"] == 8 + 5  # notes (one duplicate dropped) + JSONL records
    assert src["split"]["train"] + src["split"]["val"] == 13 and src["split"]["val"] >= 1
    assert m["counts"]["documents"] == 13

    docs = [json.loads(line) for line in (tmp_path / "c" / "documents.jsonl").read_text().splitlines()]
    assert len({d["sha256"] for d in docs}) == len(docs) == 13
    val = {d["name"] for d in docs if d["split"] == "val"}
    assert val.isdisjoint({d["name"] for d in docs if d["split"] == "train"})
    assert any(d["name"] == "records.jsonl:3" for d in docs)

    tok = load_tokenizer(tmp_path / "c")
    assert tok.token_to_id(EOT) == 0
    for split in ("train", "val"):
        s = load_split(tmp_path / "c", split)
        assert s.tokens.dtype == np.uint16
        assert s.doc_starts.sum() == m["splits"][split]["n_docs"] == sum(d["split"] == split for d in docs)
        assert (s.tokens[s.doc_starts] == 0).all() and (s.tokens[~s.doc_starts] != 0).all()
        assert s.doc_starts[0]
    # the val split decodes back to exactly the held-out documents
    val = load_split(tmp_path / "c", "val")
    starts = list(np.flatnonzero(val.doc_starts)) + [len(val.tokens)]
    texts = {tok.decode([int(t) for t in val.tokens[a + 1 : b]]) for a, b in zip(starts, starts[1:])}
    assert any("Note" in t or "Record" in t for t in texts)


def test_deterministic_for_a_seed_and_different_for_another(tmp_path, user_folder):
    cfg = CorpusConfig(sources=[str(user_folder)], **STDLIB_SMALL)
    a = build_corpus(tmp_path / "a", cfg, progress=False)
    build_corpus(tmp_path / "b", cfg, progress=False)
    assert corpus_manifest_hash(tmp_path / "a") == corpus_manifest_hash(tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    for split in ("train", "val"):
        assert np.array_equal(load_split(tmp_path / "a", split).tokens, load_split(tmp_path / "b", split).tokens)
    assert a["sources"][0]["kind"] == "stdlib" and a["sources"][1]["kind"] == "folder"
    assert 0.28e6 < a["counts"]["bytes"] <= 0.3e6  # --max-mb caps the text

    c = build_corpus(tmp_path / "c", CorpusConfig(sources=[str(user_folder)], **STDLIB_SMALL, seed=1), progress=False)
    assert c["splits"]["train"]["n_tokens"] != a["splits"]["train"]["n_tokens"]


def test_rebuild_reuses_same_settings_and_refuses_others(tmp_path, user_folder):
    cfg = CorpusConfig(sources=[str(user_folder)], include_stdlib=False, vocab_size=300)
    build_corpus(tmp_path / "c", cfg, progress=False)
    mtime = (tmp_path / "c" / "manifest.json").stat().st_mtime_ns
    build_corpus(tmp_path / "c", cfg, progress=False)  # same settings: reused, not rebuilt
    assert (tmp_path / "c" / "manifest.json").stat().st_mtime_ns == mtime
    other = CorpusConfig(sources=[str(user_folder)], include_stdlib=False, vocab_size=320)
    with pytest.raises(CorpusError, match="--force"):
        build_corpus(tmp_path / "c", other, progress=False)
    m = build_corpus(tmp_path / "c", other, progress=False, force=True)
    assert m["config"]["vocab_size"] == 320
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "texts"]  # no temp or old dirs left


def test_jsonl_field_option_and_bad_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps({"body": f"document {i} " * 30}) for i in range(6)) + "\n")
    m = build_corpus(tmp_path / "c", CorpusConfig(sources=[str(good)], include_stdlib=False, jsonl_field="body",
                                                  vocab_size=300), progress=False)
    assert m["sources"][0]["kind"] == "jsonl" and m["sources"][0]["n_docs"] == 6
    with pytest.raises(CorpusError, match=r"good\.jsonl:1 has no text field 'text' \(it has: body\).*--jsonl-field"):
        build_corpus(tmp_path / "d", CorpusConfig(sources=[str(good)], include_stdlib=False, vocab_size=300),
                     progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{not json\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2 is not valid JSON"):
        build_corpus(tmp_path / "e", CorpusConfig(sources=[str(bad)], include_stdlib=False, vocab_size=300),
                     progress=False)
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_bad_input_errors_name_the_path_and_write_nothing(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(CorpusError, match=str(missing)):
        build_corpus(tmp_path / "c", CorpusConfig(sources=[str(missing)]), progress=False)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.bin").write_bytes(b"\0\1\2" * 100)
    (junk / "b.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    with pytest.raises(CorpusError, match=r"empty.*1 binary and 1 non-UTF-8"):
        build_corpus(tmp_path / "c", CorpusConfig(sources=[str(junk)], include_stdlib=False), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk"]  # nothing half-written
    with pytest.raises(CorpusError, match="not a corpus"):
        load_split(tmp_path / "junk", "train")
    with pytest.raises(CorpusError, match="vocab_size"):
        CorpusConfig(vocab_size=100)


def test_cli_corpus_exit_codes(tmp_path, capsys):
    rc = main(["corpus", "--out", str(tmp_path / "c"), "--source", str(tmp_path / "missing.txt"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.txt" in err
    assert not (tmp_path / "c").exists()
    rc = main(["corpus", "--out", str(tmp_path / "c"), "--max-mb", "0.2", "--vocab", "300", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "stdlib" in out and "vocab 300" in out
    assert (tmp_path / "c" / "manifest.json").exists()


def test_generated_tables_are_found_by_content():
    from solu_core.corpus.sources import looks_generated

    root = stdlib_dir()
    for table in ("encodings/cp437.py", "encodings/mac_roman.py", "html/entities.py", "token.py"):
        assert looks_generated((root / table).read_text(encoding="utf-8")), table
    for source in ("os.py", "ast.py", "json/decoder.py", "argparse.py"):
        assert looks_generated((root / source).read_text(encoding="utf-8")) is None, source
    # by content, not by name: a renamed codec table is still a table
    assert looks_generated((root / "encodings/cp437.py").read_text(encoding="utf-8").replace("cp437", "notes"))


def test_prose_and_code_mixed_to_a_share_and_reported(tmp_path, monkeypatch):
    """~80% prose, ~20% code (stdlib), generated tables left out, the mix in the manifest."""
    from solu_core.corpus import sources as corpus_sources

    prose = tmp_path / "prose"
    prose.mkdir()
    words = "the river ran past old mills and quiet fields while people talked about the weather".split()
    rng = np.random.default_rng(0)
    for i in range(40):
        sentences = [" ".join(rng.choice(words, rng.integers(4, 30))).capitalize() + "." for _ in range(120)]
        (prose / f"chapter{i}.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    monkeypatch.setattr(corpus_sources, "PROSE_SOURCES", {"book": (str(prose), "write it")})
    m = build_corpus(tmp_path / "c", CorpusConfig(include_prose=True, prose_share=0.8, vocab_size=300),
                     progress=False)
    mix = m["mix"]
    assert mix["target_prose_share"] == 0.8 and mix["prose_share"] == pytest.approx(0.8, abs=0.02)
    assert mix["prose_bytes"] == sum(s["bytes"] for s in m["sources"] if s["kind"] == "prose:book")
    stdlib = m["sources"][0]
    assert stdlib["skipped_generated"] >= 50 and stdlib["capped"] > 0 and mix["generated_left_out"] >= 50
    assert any(g.startswith("encodings/cp437.py (") for g in stdlib["generated"])
    names = [json.loads(x)["name"] for x in (tmp_path / "c" / "documents.jsonl").read_text().splitlines()]
    assert not any(n.startswith(("encodings/cp", "html/entities")) for n in names)
    with pytest.raises(CorpusError, match="prose_share must be between 0 and 1"):
        CorpusConfig(prose_share=1.5)


def test_corpus_with_an_existing_tokenizer(tmp_path, user_folder):
    """`corpus --tokenizer FILE`: the file is the corpus's tokenizer (not retrained), tokens are its encoding."""
    import hashlib

    from solu_core.corpus.folder import load_split, load_tokenizer, read_manifest

    first = build_corpus(tmp_path / "a", CorpusConfig(sources=[str(user_folder)], include_stdlib=False,
                                                      vocab_size=300), progress=False)
    tok_file = tmp_path / "a" / "tokenizer.json"
    assert main(["corpus", "--out", str(tmp_path / "b"), "--no-stdlib", "--source", str(user_folder),
                 "--tokenizer", str(tok_file), "--vocab", "999", "--quiet"]) == 0
    m = read_manifest(tmp_path / "b")
    assert m["tokenizer"]["sha256"] == hashlib.sha256(tok_file.read_bytes()).hexdigest() == first["tokenizer"]["sha256"]
    assert m["tokenizer"]["vocab_size"] == 300
    tok = load_tokenizer(tmp_path / "b")
    val = load_split(tmp_path / "b", "val")
    starts = np.flatnonzero(val.doc_starts)
    doc = val.tokens[starts[0] + 1:starts[1] if len(starts) > 1 else None].tolist()
    assert tok.encode(tok.decode(doc)).ids == doc
    # a tokenizer without <|endoftext|> is refused, nothing written
    from tokenizers import Tokenizer, models

    bare = tmp_path / "bare.json"
    Tokenizer(models.BPE()).save(str(bare))
    with pytest.raises(CorpusError, match="no <\\|endoftext\\|> token"):
        build_corpus(tmp_path / "c", CorpusConfig(sources=[str(user_folder)], include_stdlib=False,
                                                  tokenizer_file=str(bare)), progress=False)
    assert not (tmp_path / "c").exists()


def test_text_stream_reads_only_what_the_tokens_take(tmp_path):
    """`record --text` over a large folder reads files only until --tokens are reached: a broken file after
    enough text is never opened (reading everything first cost the memory of the whole folder), the stream is
    cut after the batch that reaches the limit, and a JSONL line may hold a raw U+2028 inside a string."""
    from solu_core.corpus.text_streams import read_text_stream
    from solu_core.corpus.bpe import train_tokenizer

    texts = [f"def f{i}(x):\n    return x * {i} + {i * 7}\n" * 20 for i in range(200)]
    tok = train_tokenizer(texts, 300, progress=False)
    folder = tmp_path / "texts"
    folder.mkdir()
    for i, t in enumerate(texts):
        (folder / f"a{i:03d}.py").write_text(t)
    (folder / "zz_broken.jsonl").write_text("{not json\n")  # sorts last: read only if every .py file was needed
    few = read_text_stream([folder], tok, 0, max_tokens=500)
    assert few.sources[0]["files"] <= 64 + 1  # at most one batch of documents (plus the peeked one) read
    assert len(few.split) >= 500
    with pytest.raises(CorpusError, match=r"zz_broken.jsonl:1 is not valid JSON"):
        read_text_stream([folder], tok, 0, max_tokens=None)  # all of it: the broken file is reached
    again = read_text_stream([folder], tok, 0, max_tokens=500)
    assert again.sha256 == few.sha256  # the same stream each time (a resumed recording checks it)

    line = tmp_path / "sep.jsonl"
    line.write_text(json.dumps({"text": "one\u2028two"}, ensure_ascii=False) + "\n"
                    + json.dumps({"text": "three"}) + "\n", encoding="utf-8")
    stream = read_text_stream([line], tok, 0)
    assert stream.n_docs == 2
