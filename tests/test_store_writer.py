"""StoreWriter + Store on real Zarr stores on disk, with synthetic activations (no model needed)."""

import json
import os

import numpy as np
import pytest

from store import schema
from store.errors import CorruptChunkError, StoreError
from store.format.reader import Store
from tests.helpers import HOOKS, TOKENIZER, synthetic_data, synthetic_writer, write_all


@pytest.fixture()
def written(tmp_path):
    path = tmp_path / "s"
    tokens, docs, acts = synthetic_data()
    w = synthetic_writer(path)
    write_all(w, tokens, docs, acts)
    w.finish()
    return path, tokens, docs, acts


def test_round_trip_manifest_and_layout(written):
    path, tokens, docs, acts = written
    s = Store.open(path)
    assert s.complete and s.hooks == HOOKS and s.layers == [0] and s.d_mlp == 48
    assert s.n_tokens == 320 and s.context_len == 32 and s.chunk_tokens == 128 and s.n_chunks == 3
    for key in schema.MANIFEST_KEYS:
        assert key in s.manifest, key
    assert s.manifest["checkpoint_path"] == "/nowhere" and len(s.run_uuid) == 36
    np.testing.assert_array_equal(s.tokens[:], tokens)
    np.testing.assert_array_equal(s.doc_starts[:], docs)
    for h in HOOKS:
        arr = s.activations(h)
        assert arr.dtype == np.float16 and arr.chunks == (128, 48)
        np.testing.assert_array_equal(arr[:], acts[h])
        assert arr.metadata.dimension_names == (schema.TOKEN_DIM, schema.NEURON_DIM)
        assert arr.metadata.codecs[-1].to_dict()["name"] == "crc32c"
    np.testing.assert_array_equal(s.read_chunk(HOOKS[0], 2), acts[HOOKS[0]][256:])
    assert s.tokenizer_json == TOKENIZER
    s.require_complete()
    info = s.info()
    assert info["complete"] and info["chunks_done"] == 3 and info["size_on_disk"] > 0
    assert 0.8 < info["compression_ratio"] <= 1.0  # uncompressed; the edge chunk is padded


def test_every_array_has_dimension_names_and_crc(written):
    import zarr

    g = zarr.open_group(written[0], mode="r")
    arrays = [(k, v) for k, v in g.members(max_depth=None) if isinstance(v, zarr.Array)]
    assert len(arrays) > 10  # data, markers, tokenizer, logit effects
    for name, arr in arrays:
        assert arr.metadata.dimension_names is not None and None not in arr.metadata.dimension_names, name
        assert arr.metadata.codecs[-1].to_dict()["name"] == "crc32c", name


def test_xarray_and_dask_open_the_store(written):
    import dask.array as da
    import xarray as xr

    path, tokens, _, acts = written
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
    assert ds[HOOKS[0]].dims == ("token", "neuron")
    np.testing.assert_array_equal(ds[HOOKS[0]].values, acts[HOOKS[0]])
    np.testing.assert_array_equal(ds[schema.TOKENS].values, tokens)
    np.testing.assert_array_equal(da.from_zarr(str(path), component=HOOKS[1]).compute(), acts[HOOKS[1]])


def _chunk_file(path, name, i):
    return path / name / "c" / str(i) / "0"


def test_chunk_overwritten_with_random_bytes_is_refused_by_name(written):
    path, *_ = written
    f = _chunk_file(path, HOOKS[0], 1)
    f.write_bytes(np.random.default_rng(1).bytes(f.stat().st_size))
    s = Store.open(path)
    np.testing.assert_array_equal(s.read_chunk(HOOKS[0], 0), written[3][HOOKS[0]][:128])  # others still fine
    with pytest.raises(CorruptChunkError, match=r"blocks\.0\.mlp\.hook_post.*c/1/0.*checksum"):
        s.activations(HOOKS[0])[:]
    with pytest.raises(CorruptChunkError, match=r"c/1/0"):
        s.read_chunk(HOOKS[0], 1)


def test_dense_chunks_read_straight_from_their_files_equal_zarr_and_refuse_a_wrong_size(written):
    """read_chunk decodes dense chunks (bytes + Crc32c) itself, without zarr: same values as zarr,
    the short last chunk trimmed, and a file one byte too long or short refused by name."""
    path, tokens, docs, acts = written
    s = Store.open(path)
    assert s.n_chunks == 3 and s.n_tokens == 320  # the last chunk holds 64 of 128 rows
    for h in HOOKS:
        for c in range(s.n_chunks):
            got = s.read_chunk(h, c)
            np.testing.assert_array_equal(got, acts[h][c * 128:(c + 1) * 128])
            assert got.dtype == np.float16
        assert s._direct[h] == "raw"  # the direct path was taken, not zarr's
    f = _chunk_file(path, HOOKS[0], 2)
    raw = f.read_bytes()
    for bad in (raw + b"\0", raw[:-1]):
        f.write_bytes(bad)
        want = rf"blocks\.0\.mlp\.hook_post.*c/2/0.*({len(bad)}|{len(bad):,}) bytes"
        with pytest.raises(CorruptChunkError, match=want):
            Store.open(path).read_chunk(HOOKS[0], 2)
    f.write_bytes(raw)
    np.testing.assert_array_equal(Store.open(path).read_chunk(HOOKS[0], 2), acts[HOOKS[0]][256:])


def test_truncated_chunk_is_refused(written):
    path, *_ = written
    f = path / schema.TOKENS / "c" / "2"
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(CorruptChunkError, match=r"'tokens'.*'c/2'"):
        Store.open(path).tokens[:]


def test_missing_chunk_is_refused_not_read_as_fill_value(written):
    path, *_ = written
    os.remove(_chunk_file(path, HOOKS[1], 0))
    with pytest.raises(CorruptChunkError, match=r"hook_mid.*c/0/0.*missing"):
        Store.open(path).activations(HOOKS[1])[0:5]


def test_resume_writes_only_pending_chunks_and_matches(tmp_path):
    tokens, docs, acts = synthetic_data()
    a, b = tmp_path / "a", tmp_path / "b"
    w = synthetic_writer(a)
    write_all(w, tokens, docs, acts)
    w.finish()
    w = synthetic_writer(b)
    write_all(w, tokens, docs, acts, chunks=[0])
    assert not Store.open(b).complete
    with pytest.raises(StoreError, match="incomplete.*neurobrowse record CK"):
        Store.open(b).require_complete()
    with pytest.raises(StoreError, match="not finished"):
        w.finish()
    w2 = synthetic_writer(b)  # resume, as a new process would
    assert w2.pending_all() == [1, 2]
    assert w2.manifest["run_uuid"] == w.manifest["run_uuid"]
    write_all(w2, tokens, docs, acts, chunks=w2.pending_all())
    w2.finish()
    sa, sb = Store.open(a), Store.open(b)
    assert sb.complete
    for name in [schema.TOKENS, schema.DOC_STARTS, *HOOKS]:
        np.testing.assert_array_equal(sa.group[name][:], sb.group[name][:])


def test_lost_chunk_after_finish_makes_store_incomplete_on_resume(written):
    path, tokens, docs, acts = written
    os.remove(_chunk_file(path, HOOKS[0], 2))
    w = synthetic_writer(path)
    assert not Store.open(path).complete and w.pending_chunks(HOOKS[0]) == [2]
    a, b = w.chunk_rows(2)
    w.write_chunk(HOOKS[0], 2, acts[HOOKS[0]][a:b])
    w.finish()
    np.testing.assert_array_equal(Store.open(path).activations(HOOKS[0])[:], acts[HOOKS[0]])


def test_resume_with_other_arguments_is_a_clear_error(written):
    path = written[0]
    with pytest.raises(StoreError, match=r"n_tokens: store has 320, asked 256"):
        synthetic_writer(path, n_tokens=256)
    with pytest.raises(StoreError, match=r"hooks"):
        synthetic_writer(path, hooks=HOOKS[:1])


def test_open_errors_name_the_path(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        Store.open(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="not a neurobrowse store"):
        Store.open(tmp_path / "junk")
    with pytest.raises(StoreError, match="not a neurobrowse store"):
        synthetic_writer(tmp_path / "junk")


def test_other_schema_version_is_refused(written):
    path = written[0]
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"][schema.ATTRS_KEY]["schema_version"] = 999
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="schema version 999"):
        Store.open(path)


def test_write_chunk_checks_shape(tmp_path):
    w = synthetic_writer(tmp_path / "s")
    with pytest.raises(StoreError, match=r"must have shape \(128, 48\)"):
        w.write_chunk(HOOKS[0], 0, np.zeros((100, 48)))
    assert w.pending_chunks(HOOKS[0]) == [0, 1, 2]


def test_directly_written_chunks_are_byte_identical_to_zarrs(written):
    """The writer writes chunks and markers itself (speed); zarr must write the same bytes."""
    import zarr

    path, tokens, _, acts = written
    for i in range(3):  # chunk 2 is the padded edge chunk
        for name, data, key in [(HOOKS[0], acts[HOOKS[0]], f"c/{i}/0"), (schema.TOKENS, tokens, f"c/{i}"),
                                (schema.done_path(HOOKS[0]), None, f"c/{i}")]:
            f = path / name / key
            mine = f.read_bytes()
            f.unlink()
            arr = zarr.open_array(path / name, mode="r+").with_config(schema.ARRAY_CONFIG)
            if data is None:  # the marker records the chunk's checksum
                arr[i] = int(np.frombuffer(mine[:-4], "<u8")[0])
                assert mine[:4] == (path / HOOKS[0] / f"c/{i}/0").read_bytes()[-4:]
            else:
                arr[i * 128:(i + 1) * 128] = data[i * 128:(i + 1) * 128]
            assert f.read_bytes() == mine, (name, key)


def test_damaged_marker_counts_as_not_written(written):
    path = written[0]
    (path / schema.done_path(HOOKS[1]) / "c" / "1").write_bytes(b"")  # killed while writing the marker
    w = synthetic_writer(path)
    assert w.pending_chunks(HOOKS[1]) == [1] and not Store.open(path).complete
