"""A damaged resume state is discarded and computed again, never merged; a damaged index of a store without
dense activations is kept and the record command that rebuilds it (printed by the error and by verify) works.

These are the tamper tests that would have caught the silent wrong variance: a saved state whose token count,
chunk bytes or arrays were altered resumed to an index whose moments differed from an uninterrupted run."""

import json
import shlex
import shutil
from pathlib import Path

import pytest

from store import schema
from store.index import IndexConfig, index_store
from store.format.reader import Store
from tests.builders import TINY_TOKENS, run_cli
from solu_core.record_config import CorpusText, RecordConfig
from tests.helpers import assert_same_index

HOOK = "blocks.0.mlp.hook_post"


def _slot(state_root: Path, progress: dict, which: str) -> Path:
    return state_root / schema.INDEX_STATE_GROUP / progress[which]["slot"]


def _tamper_n(slot: Path) -> None:
    meta = slot / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["n"] += 1  # the token count the moments merge with: the silent wrong variance
    meta.write_text(json.dumps(doc))


def _tamper_n_unsealed(slot: Path) -> None:
    """The token count altered and the seal removed (as a state of an older version would be): the
    invariants (one histogram count per token covered) still catch it."""
    meta = slot / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["n"] += 1
    doc["attributes"].pop("neurobrowse_seal")
    meta.write_text(json.dumps(doc))


def _flip_chunk_byte(slot: Path) -> None:
    f = next((slot / "m2" / "c").rglob("*"))
    f = f if f.is_file() else next(p for p in (slot / "m2" / "c").rglob("*") if p.is_file())
    b = bytearray(f.read_bytes())
    b[3] ^= 0x10
    f.write_bytes(bytes(b))


def _swap_arrays(slot: Path) -> None:
    a, b = slot / "m2" / "c" / "0", slot / "m3" / "c" / "0"
    ta = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(ta)


def _delete_chunk(slot: Path) -> None:
    next(p for p in (slot / "hist" / "c").rglob("*") if p.is_file()).unlink()


TAMPER = {"token-count": _tamper_n, "token-count-unsealed": _tamper_n_unsealed, "chunk-byte": _flip_chunk_byte,
          "arrays-swapped": _swap_arrays, "chunk-deleted": _delete_chunk}


@pytest.mark.parametrize("how", list(TAMPER))
def test_index_resume_discards_a_damaged_state_and_gets_the_uninterrupted_index(tiny_stores, tmp_path, how, capsys):
    path = tmp_path / "g"
    shutil.copytree(tiny_stores["gelu"], path)
    out = index_store(path, force=True, progress=False, config=IndexConfig(checkpoint_every_s=1e9, stop_after_chunks=3))
    assert out[HOOK].get("stopped")
    rebuild = path / schema.index_rebuild_path(HOOK)
    progress = json.loads((rebuild / "zarr.json").read_text())["attributes"]["progress"]
    TAMPER[how](_slot(rebuild, progress, "p1"))
    capsys.readouterr()
    index_store(path, progress=False)
    err = capsys.readouterr().err
    assert "saved resume state 'p1'" in err and "discarded" in err, err
    assert_same_index(Store.open(path), Store.open(tiny_stores["gelu"]))


def test_record_index_resume_discards_a_damaged_state_and_gets_the_uninterrupted_index(tiny_root, tiny_stores, tmp_path,
                                                                                      capsys):
    """`record --index --dense none` stopped after a save, a chunk of its saved state damaged (a raw checksum
    traceback before), the same call again: the state is discarded, the chunks are computed again from the
    model, and the index equals record-then-index's."""
    from solu_core.record import record

    class Stop(Exception):
        pass

    def stop(hook, which, chunk_stop):
        if chunk_stop >= 8:
            raise Stop()

    out = tmp_path / "r"
    cfg = RecordConfig(text=CorpusText(tiny_root / "corpus"), n_tokens=TINY_TOKENS, chunk_tokens=1024, device="cpu",
                       batch_size=16, index=True, dense=False)
    with pytest.raises(Stop):
        record(tiny_root / "models" / "gelu", out,
               cfg.replace(index_config=IndexConfig(checkpoint_every_s=0.0, on_checkpoint=stop)), progress=False)
    st = Store.open(out)
    progress = st.index_state(HOOK)["progress"]
    _flip_chunk_byte(_slot(out / schema.index_path(HOOK), progress, "p1"))
    capsys.readouterr()
    record(tiny_root / "models" / "gelu", out, cfg, progress=False)
    err = capsys.readouterr().err
    assert "discarded" in err, err
    ref = tmp_path / "ref"  # the same call, never interrupted
    record(tiny_root / "models" / "gelu", ref, cfg, progress=False)
    assert_same_index(Store.open(out), Store.open(ref))


def test_a_damaged_partial_in_an_index_resume_is_not_merged(tiny_stores, tmp_path, capsys):
    """The p2 (samples) state damaged after pass 1 finished: recomputed, not merged (a TypeError in the
    moments' merge before, for a state with a field missing)."""
    path = tmp_path / "g"
    shutil.copytree(tiny_stores["gelu"], path)
    index_store(path, force=True, progress=False, config=IndexConfig(checkpoint_every_s=1e9, stop_after_chunks=3))
    rebuild = path / schema.index_rebuild_path(HOOK)
    progress = json.loads((rebuild / "zarr.json").read_text())["attributes"]["progress"]
    slot = _slot(rebuild, progress, "p1")
    shutil.rmtree(slot / "mean")  # a field gone: the class cannot be made from what is left
    index_store(path, progress=False)
    assert "discarded" in capsys.readouterr().err
    assert_same_index(Store.open(path), Store.open(tiny_stores["gelu"]))


@pytest.fixture(scope="module")
def dense_free_ctx(tiny_root, tmp_path_factory):
    """The tiny GeLU model recorded with `record --index --dense none` and a non-default --context 32."""
    out = tmp_path_factory.mktemp("nodense_ctx") / "store"
    r = run_cli(["record", tiny_root / "models" / "gelu", "--out", out, "--tokens", TINY_TOKENS, "--chunk-tokens",
                 "1024", "--context", "32", "--corpus", tiny_root / "corpus", "--device", "cpu", "--quiet", "--index",
                 "--dense", "none"])
    assert r.returncode == 0, r.stderr
    return out


def test_a_damaged_index_of_a_dense_free_store_is_kept_and_the_printed_record_command_rebuilds_it(dense_free_ctx,
                                                                                                   tmp_path):
    s = tmp_path / "s"
    shutil.copytree(dense_free_ctx, s)
    a, b = s / "index" / HOOK / "var" / "c" / "0", s / "index" / HOOK / "skewness" / "c" / "0"
    ta = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(ta)
    r = run_cli(["show", s, "--layer", "0", "--neuron", "3"])
    assert r.returncode == 2 and "no dense activations" in r.stderr and "lost" in r.stderr, r.stderr
    cmd = r.stderr.rsplit("`", 2)[-2]
    assert "--context 32" in cmd and "--dense none" in cmd, cmd
    r = run_cli(["verify", s])
    assert r.returncode == 1 and cmd in r.stdout, r.stdout
    r = run_cli(["verify", "--repair", s])
    assert r.returncode == 1 and cmd in r.stdout
    assert (s / "index" / HOOK / "var").is_dir()  # never deleted: nothing here could build it again
    argv = shlex.split(cmd)
    assert argv[:2] == ["neurobrowse", "record"]
    r = run_cli(argv[1:] + ["--device", "cpu", "--quiet"])
    assert r.returncode == 0, r.stderr
    new = Store.open(argv[argv.index("--out") + 1])
    assert new.context_len == 32 and not new.dense
    assert_same_index(new, Store.open(dense_free_ctx))
