"""One table of hostile inputs covering every verb: each must end in a clean ``error:`` (exit 2, or 1 for a
damaged store found by info/verify), never a Python traceback, and must leave the stores, the label
database and every other file as they were. Run through the real CLI entry point on real tiny stores."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.builders import run_cli


@pytest.fixture(scope="module")
def world(tiny_stores, tiny_root, tmp_path_factory):
    """Copies of the tiny stores, a label database with one label, a study, and assorted bad paths."""
    root = tmp_path_factory.mktemp("hostile")
    gelu, solu = root / "gelu", root / "solu"
    shutil.copytree(tiny_stores["gelu"], gelu)
    shutil.copytree(tiny_stores["solu_ln"], solu)
    db = root / "labels.sqlite"
    res = run_cli(["labels", "set", str(gelu), "0", "3", "--verdict", "interpretable", "--db", str(db)])
    assert res.returncode == 0
    study = root / "study"
    assert run_cli(["study", "new", "--stores", str(gelu), str(solu), "--per-model", "2", "--seed", "1",
                    "--out", str(study)]).returncode == 0
    (root / "a_file").write_text("not a folder")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 4)
    os.mkfifo(root / "fifo")  # --text must never open it (the read would wait forever)
    (root / "textdir").mkdir()
    os.mkfifo(root / "textdir" / "pipe")
    (root / "neg.jsonl").write_text(json.dumps({"kind": "neurobrowse-labels", "export_version": 1}) + "\n"
                                    + json.dumps({"run_uuid": "r", "hook": "blocks.0.mlp.hook_post", "neuron": -1,
                                                  "label": {"verdict": "interpretable"}}) + "\n")
    ckcopy = root / "ckcopy"  # a checkpoint whose files an export must never overwrite
    shutil.copytree(tiny_root / "models" / "gelu", ckcopy)
    solu_tok = root / "solu_tok"  # a store whose manifest says another tokenizer
    shutil.copytree(tiny_stores["solu_ln"], solu_tok)
    doc = json.loads((solu_tok / "zarr.json").read_text())
    doc["attributes"]["neurobrowse"].update(tokenizer_hash="0" * 64, run_uuid="other-run")
    (solu_tok / "zarr.json").write_text(json.dumps(doc))
    solu_k4 = root / "solu_k4"  # indexed with another k
    shutil.copytree(tiny_stores["solu_ln"], solu_k4)
    from store.index import index_store

    index_store(solu_k4, k=4, force=True, progress=False)
    doc = json.loads((solu_k4 / "zarr.json").read_text())
    doc["attributes"]["neurobrowse"]["run_uuid"] = "k4-run"
    (solu_k4 / "zarr.json").write_text(json.dumps(doc))
    bad = root / "badmeta"  # a store copy whose hook's array metadata is garbage
    shutil.copytree(tiny_stores["gelu"], bad)
    (bad / "blocks.0.mlp.hook_post" / "zarr.json").write_text("{garbage")
    (bad / "index" / "blocks.0.mlp.hook_post" / "top_values" / "zarr.json").write_text("[1, 2")
    return {"root": root, "gelu": gelu, "solu": solu, "db": db, "study": study,
            "ck": tiny_root / "models" / "gelu", "corpus": tiny_root / "corpus", "bad": bad, "ckcopy": ckcopy,
            "solu_tok": solu_tok, "solu_k4": solu_k4}


def _cases():
    """(id, argv template, text the error must contain). {x} are filled from the world fixture."""
    return [
        # demo
        ("demo-tokens-0", "demo --tokens 0 --workdir {root}/w", "must be at least 1"),
        ("demo-workdir-file", "demo --workdir {root}/a_file", "is a file"),
        ("demo-device-bogus", "demo --device bogus --workdir {root}/w", "is not a device"),
        # corpus
        ("corpus-out-file", "corpus --out {root}/a_file", "is a file"),
        ("corpus-out-dangling", "corpus --out {root}/dangling", "which does not exist"),
        ("corpus-vocab-0", "corpus --vocab 0 --out {root}/c", "must be at least 1"),
        ("corpus-val-fraction", "corpus --val-fraction 1.5 --out {root}/c", "between 0 and 1"),
        ("corpus-max-mb-neg", "corpus --max-mb -1 --out {root}/c", "more than 0"),
        # train
        ("train-batch-0", "train --batch-size 0 --out {root}/t", "must be at least 1"),
        ("train-ckpt-every-0", "train --ckpt-every 0 --out {root}/t", "must be at least 1"),
        ("train-lr-neg", "train --lr -1 --out {root}/t", "more than 0"),
        ("train-lr-nan", "train --lr nan --out {root}/t", "not a finite number"),
        ("train-steps-0", "train --steps 0 --out {root}/t", "must be at least 1"),
        ("train-device-cuda", "train --device cuda --out {root}/t", "CUDA"),
        ("train-device-bogus", "train --device bogus --out {root}/t", "is not a device"),
        ("train-out-file", "train --out {root}/a_file", "is a file"),
        # record
        ("record-chunk-0", "record {ck} --out {root}/r --chunk-tokens 0", "must be at least 1"),
        ("record-chunk-neg", "record {ck} --out {root}/r --chunk-tokens -64", "must be at least 1"),
        ("record-batch-0", "record {ck} --out {root}/r --batch-size 0", "must be at least 1"),
        ("record-batch-neg", "record {ck} --out {root}/r --batch-size -1", "must be at least 1"),
        ("record-device-cuda", "record {ck} --out {root}/r --device cuda", "CUDA"),
        ("record-device-bogus", "record {ck} --out {root}/r --device bogus", "is not a device"),
        ("record-out-file", "record {ck} --out {root}/a_file", "is a file"),
        ("record-out-dangling", "record {ck} --out {root}/dangling", "which does not exist"),
        ("record-into-other-store", "record {ck} --out {solu} --corpus {corpus} --tokens 2048", "other arguments"),
        ("record-out-inside-store", "record {ck} --out {gelu}/inner --corpus {corpus} --tokens 2048",
         "inside the store"),
        ("record-out-inside-index", "record {ck} --out {gelu}/index/x --corpus {corpus} --tokens 2048",
         "inside the store"),
        ("record-text-fifo", "record {ck} --out {root}/r --text {root}/fifo --tokens 2048", "1 special files"),
        ("record-text-dir-fifo", "record {ck} --out {root}/r --text {root}/textdir --tokens 2048", "1 special files"),
        ("record-text-dev-zero", "record {ck} --out {root}/r --text /dev/zero --tokens 2048", "1 special files"),
        ("record-context-0", "record {ck} --out {root}/r --corpus {corpus} --tokens 2048 --context 0", "--context 0"),
        ("record-context-1", "record {ck} --out {root}/r --corpus {corpus} --tokens 2048 --context 1", "2.."),
        # index
        ("index-k-0", "index {gelu} --k 0", "must be at least 1"),
        ("index-k-huge", "index {gelu} --k 100000 --force", "GB of memory"),
        ("index-window-huge", "index {gelu} --window 4096,4096 --k 1000 --force", "--window 4096,4096"),
        ("index-hooks-bogus", "index {gelu} --hooks bogus", "is not an MLP hook name"),
        ("index-hook-absent", "index {gelu} --hooks blocks.7.mlp.hook_post", "has no hook"),
        ("index-no-store", "index {root}/nowhere", "no store at"),
        ("index-garbage-meta", "index {bad} --force", "damaged"),
        # info / verify
        ("info-no-store", "info {root}/nowhere", "no store at"),
        ("info-file", "info {root}/a_file", "is a file"),
        ("verify-no-store", "verify {root}/nowhere", "no store at"),
        # show
        ("show-layer-absent", "show {gelu} --layer 7 --neuron 0", "has no hook"),
        ("show-neuron-neg", "show {gelu} --layer 0 --neuron -1", "must be 0 or more"),
        ("show-neuron-big", "show {gelu} --layer 0 --neuron 99999", "out of range"),
        ("show-snippets-neg", "show {gelu} --layer 0 --neuron 0 --snippets -3", "must be 0 or more"),
        ("show-garbage-meta", "show {bad} --layer 0 --neuron 0", "damaged"),
        # open
        ("open-hook-bogus", "open {gelu} --hook bogus --offscreen", "is not an MLP hook name"),
        ("open-hook-absent", "open {gelu} --hook blocks.7.mlp.hook_post --offscreen", "has no hook"),
        ("open-neuron-big", "open {gelu} --neuron 99999 --offscreen", "out of range"),
        # compare
        ("compare-same", "compare {gelu} {gelu} --summary", "same recording"),
        ("compare-no-store", "compare {gelu} {root}/nowhere --summary", "no store at"),
        ("compare-other-k", "compare {gelu} {solu_k4} --summary", "another k"),
        ("compare-other-tokenizer", "compare {gelu} {solu_tok} --summary", "different tokenizers"),
        # replicate
        ("replicate-sizes-bad", "replicate --sizes 1,x --out {root}/rep", "'x' is not a whole number"),
        # features
        ("features-hook-absent", "features train {gelu} --hook blocks.7.mlp.hook_post", "has no hook"),
        ("features-no-store", "features train {root}/nowhere --hook blocks.0.mlp.hook_post", "no store at"),
        # labels
        ("labels-set-neg", "labels set {gelu} 0 -1 --verdict interpretable --db {db}", "must be 0 or more"),
        ("labels-busy-neg", "labels list --busy-timeout -5 --db {db}", "must be 0 or more"),
        ("labels-import-binary", "labels import {root}/binary.bin --db {db}", "binary file"),
        ("labels-import-neg", "labels import {root}/neg.jsonl --db {db}", "neuron numbers start at 0"),
        ("labels-export-db", "labels export --out {db} --db {db}", "is the label database"),
        ("labels-export-wal", "labels export --out {db}-wal --db {db}", "is the label database"),
        ("labels-export-dir", "labels export --out {root} --db {db}", "is a folder"),
        ("labels-export-dev-full", "labels export --out /dev/full --db {db}", "not a regular file"),
        ("labels-export-study-key", "labels export --out {study}/key.json --db {db}", "inside the study"),
        ("labels-export-weights", "labels export --out {ckcopy}/model.safetensors --db {db}", "weights"),
        ("labels-backup-dev-null", "labels backup --out /dev/null --db {db}", "not a regular file"),
        ("labels-backup-ratings", "labels backup --out {study}/ratings.sqlite --db {db}", "inside the study"),
        ("labels-backup-store", "labels backup --out {gelu}/zarr.json --db {db}", "inside the Zarr store"),
        ("labels-backup-ckpt", "labels backup --out {ckcopy}/config.json --db {db}", "inside the checkpoint"),
        # study
        ("study-per-model-neg", "study new --stores {gelu} {solu} --per-model -3 --out {root}/s", "must be at least 1"),
        ("study-one-store", "study new --stores {gelu} --out {root}/s1", "at least two stores"),
        ("study-out-file", "study new --stores {gelu} {solu} --out {root}/a_file", "is a file"),
        ("study-out-dangling", "study new --stores {gelu} {solu} --out {root}/dangling", "which does not exist"),
        ("study-rate-binary", "study rate {study} --answers {root}/binary.bin --rater x", "binary file"),
        ("study-report-out-file", "study report {study} --out {root}/a_file", "is a file"),
        # export
        ("export-snippets-neg", "export {gelu} --out {root}/e.jsonl --snippets -3 --db {db}", "must be 0 or more"),
        ("export-min-score-nan", "export {gelu} --out {root}/e.jsonl --min-score nan --db {db}", "finite"),
        ("export-layer-absent", "export {gelu} --out {root}/e.jsonl --layer 7 --db {db}", "no such layer"),
        ("export-out-db", "export {gelu} --out {db} --db {db}", "is the label database"),
        ("export-out-shm", "export {gelu} --out {db}-shm --db {db}", "is the label database"),
        ("export-into-store", "export {gelu} --out {gelu}/zarr.json --db {db}", "inside the Zarr store"),
        ("export-dev-null", "export {gelu} --out /dev/null --db {db}", "not a regular file"),
        ("export-study-json", "export {gelu} --out {study}/study.json --db {db}", "inside the study"),
        ("export-weights", "export {gelu} --out {ckcopy}/model.safetensors --db {db}", "weights"),
        ("export-garbage-meta", "export {bad} --out {root}/e2.jsonl --all --db {db}", "damaged"),
    ]


CASES = _cases()


def _snapshot(root: Path) -> dict:
    """Every file under root (not the scratch outputs the cases name) with its content hash (FIFOs and
    devices by their kind, files over 64 MB by size and time: the planted hostile files)."""
    import stat

    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_symlink():
                continue
            st = p.stat()
            key = str(p.relative_to(root))
            if not stat.S_ISREG(st.st_mode):
                out[key] = f"special {stat.S_IFMT(st.st_mode)}"
            elif st.st_size > 64 << 20:
                out[key] = f"big {st.st_size} {st.st_mtime_ns}"
            else:
                out[key] = hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_a_clean_error_and_loses_nothing(world, case):
    name, template, expect = case
    before = _snapshot(world["root"])
    argv = template.format(**{k: str(v) for k, v in world.items()}).split()
    r = run_cli(argv)
    after = _snapshot(world["root"])
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lost = {k for k in before if before[k] != after.get(k)}
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "error:" in r.stderr and expect in r.stderr, r.stderr
    assert not lost, f"changed by a refused command: {sorted(lost)[:5]}"
    assert not (set(after) - set(before)), f"left behind: {sorted(set(after) - set(before))[:5]}"


def test_hostile_table_covers_every_verb():
    from neurobrowse.cli import VERBS

    covered = {c[1].split()[0] for c in CASES}
    assert set(VERBS) <= covered, set(VERBS) - covered


# ---- damaged stores: every file an index, a resume or a reader relies on -------------------------------------
# Each case damages its own copy of the tiny GeLU store (built once per module), runs one verb in process and
# asserts a clean `error:` (exit 2; `verify` reports damage with exit 1) naming what is wrong, and that the
# refused command changed nothing on disk. "Silently wrong" is the failure this table exists for: a verb that
# exits 0 on a damaged store fails its case.
HOOK = "blocks.0.mlp.hook_post"


def _ix(d: Path, name: str) -> Path:
    return d / "index" / HOOK / name


def _swap(a: Path, b: Path) -> None:
    ta = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(ta)


def _edit_json(f: Path, fn) -> None:
    doc = json.loads(f.read_text())
    fn(doc)
    f.write_text(json.dumps(doc))


def _edit_manifest(fn):
    return lambda d: _edit_json(d / "zarr.json", lambda doc: fn(doc["attributes"]["neurobrowse"]))


def _set_meta(name, key, value):
    def go(doc):
        doc[key] = value(doc[key]) if callable(value) else value
    return lambda d: _edit_json(_ix(d, name) / "zarr.json", go)


def _flip_byte(f: Path, at: int = 20) -> None:
    b = bytearray(f.read_bytes())
    b[at % len(b)] ^= 0x40
    f.write_bytes(bytes(b))


def _plant_fifo(f: Path) -> None:
    f.unlink()
    os.mkfifo(f)


def _plant_huge(f: Path) -> None:
    """A sparse 2 GB file in a chunk's place (as if /dev/zero had been copied in): no disk used."""
    with open(f, "wb") as fh:
        fh.truncate(2 << 30)


def _damage_cases():
    """(id, damage(store copy), verbs: [(argv template, exit status, text the error must contain)])."""
    show = ("show {s} --layer 0 --neuron 3", 2)
    show17 = ("show {s} --layer 0 --neuron 17", 2)
    export = ("export {s} --out {out}/e.jsonl --all --db {out}/l.sqlite", 2)
    compare = ("compare {s} {other} --summary", 2)
    info = ("info {s}", 2)
    verify = ("verify {s}", 1)
    verify_refused = ("verify {s}", 2)  # a manifest verify cannot go by
    swapped = "not the chunk written there"
    return [
        ("index-two-columns-swapped", lambda d: _swap(_ix(d, "var") / "c" / "0", _ix(d, "skewness") / "c" / "0"),
         [(*show, swapped), (*export, swapped), (*compare, swapped), (*verify, "var")]),
        ("index-two-chunks-swapped", lambda d: _swap(_ix(d, "top_values") / "c" / "0" / "0",
                                                     _ix(d, "top_values") / "c" / "1" / "0"),
         [(*show, "top_values"), (*show17, "top_values"), (*verify, "top_values")]),
        ("index-array-folders-swapped", lambda d: (os.rename(_ix(d, "mean"), _ix(d, "x")),
                                                   os.rename(_ix(d, "density"), _ix(d, "mean")),
                                                   os.rename(_ix(d, "x"), _ix(d, "density"))),
         [(*show, "written as"), (*verify, "written as")]),
        ("index-chunk-deleted", lambda d: (_ix(d, "top_positions") / "c" / "0" / "0").unlink(),
         [(*show, "missing"), (*verify, "missing")]),
        ("index-chunk-byte-flipped", lambda d: _flip_byte(_ix(d, "sample_values") / "c" / "0" / "0" / "0"),
         [(*show, "Crc32c"), (*verify, "Crc32c")]),
        ("index-shape-halved", _set_meta("top_values", "shape", lambda s: [s[0] // 2, *s[1:]]),
         [(*show, "shape"), (*export, "shape"), (*compare, "shape"), (*verify, "shape")]),
        ("index-dtype-int32", _set_meta("top_values", "data_type", "int32"),
         [(*show, "dtype"), (*export, "dtype"), (*verify, "dtype")]),
        ("index-dtype-float16", _set_meta("mean", "data_type", "float16"),
         [(*show, "dtype"), (*compare, "dtype"), (*verify, "dtype")]),
        ("index-record-edited", _set_meta("var", "attributes", lambda a: {**a, "neurobrowse_checksums": {
            **a["neurobrowse_checksums"], "shape": [1]}}),
         [(*show, "checksum record is damaged"), (*verify, "checksum record")]),
        ("index-window-attr", lambda d: _edit_json(d / "index" / HOOK / "zarr.json",
                                                  lambda doc: doc["attributes"].update(context_before=65)),
         [(*show, "window")]),
        ("manifest-n-tokens-text", _edit_manifest(lambda m: m.update(n_tokens="abc")),
         [(*info, "n_tokens"), (*show, "n_tokens"), (*export, "n_tokens"), (*compare, "n_tokens"),
          (*verify_refused, "n_tokens")]),
        ("manifest-no-hooks", _edit_manifest(lambda m: m.pop("hooks")),
         [(*info, "hooks"), (*show, "hooks"), (*export, "hooks"), (*compare, "hooks")]),
        ("manifest-chunk-tokens-0", _edit_manifest(lambda m: m.update(chunk_tokens=0)),
         [(*info, "chunk_tokens"), (*show, "chunk_tokens"), (*verify_refused, "chunk_tokens")]),
        ("manifest-wrong-d-mlp",
         _edit_manifest(lambda m: m["model_config"].update(d_mlp=m["model_config"]["d_mlp"] * 2)),
         [(*info, "d_mlp"), (*show, "d_mlp"), (*export, "d_mlp"), (*compare, "d_mlp")]),
        ("manifest-n-tokens-more", _edit_manifest(lambda m: m.update(n_tokens=m["n_tokens"] + 4096)),
         [(*info, "n_tokens"), (*show, "n_tokens")]),
        ("index-chunk-fifo", lambda d: _plant_fifo(_ix(d, "var") / "c" / "0"),
         [(*show, "not a regular file"), (*export, "not a regular file"), (*verify, "not a regular file")]),
        ("dense-chunk-fifo", lambda d: _plant_fifo(d / HOOK / "c" / "1" / "0"),
         [(*verify, "not a regular file"), ("index {s} --force --quiet", 2, "not a regular file", "writes")]),
        ("index-chunk-huge", lambda d: _plant_huge(_ix(d, "top_values") / "c" / "0" / "0"),
         [(*show, "more than its array's chunk"), (*verify, "more than its array's chunk")]),
        ("dense-chunk-huge", lambda d: _plant_huge(d / HOOK / "c" / "2" / "0"),
         [(*verify, "more than its array's chunk"),
          ("index {s} --force --quiet", 2, "more than its array's chunk", "writes")]),
        ("marker-file-fifo", lambda d: _plant_fifo(d / "done" / "tokens" / "c" / "0"),
         [(*verify, "no completion marker")]),
        ("marker-meta-truncated", lambda d: (d / "done" / "tokens" / "zarr.json").write_text('{"shape": [5'),
         [(*info, "damaged"), (*verify, "done/tokens")]),
    ]


DAMAGE = _damage_cases()


@pytest.fixture(scope="module")
def damage_base(tiny_stores, tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    base = root / "base"
    shutil.copytree(tiny_stores["gelu"], base)
    return {"root": root, "base": base, "other": tiny_stores["solu_ln"]}


@pytest.mark.parametrize("case", DAMAGE, ids=[c[0] for c in DAMAGE])
def test_damaged_store_is_a_clean_error_never_a_wrong_number(damage_base, case, tmp_path):
    name, damage, verbs = case
    s = tmp_path / "s"
    shutil.copytree(damage_base["base"], s)
    damage(s)
    out = tmp_path / "out"
    out.mkdir()
    for template, rc, expect, *writes in verbs:  # "writes": a rebuild that began beside the index may stay
        before = _snapshot(s)
        argv = template.format(s=s, out=out, other=damage_base["other"]).split()
        r = run_cli(argv)
        assert "Traceback" not in r.stderr + r.stdout, (argv, r.stderr)
        assert r.returncode == rc, (argv, r.returncode, r.stdout[-1500:], r.stderr[-1500:])
        text = r.stderr if rc == 2 else r.stdout
        assert expect in text, (argv, text[-1500:])
        if rc == 2:
            assert "error:" in r.stderr, r.stderr
        if not writes:
            assert _snapshot(s) == before, f"{argv[0]} changed the damaged store"
