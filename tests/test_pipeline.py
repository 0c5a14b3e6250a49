"""The recording pipeline: background writing gives the inline store's bytes; consumers see every chunk."""

import numpy as np
import pytest
import zarr

from solu_core.record import RecordStats, record
from solu_core.record_config import CorpusText, RecordConfig
from store import schema
from store.format.reader import Store


def _all_arrays(path):
    g = zarr.open_group(path, mode="r")
    return {k: v[:] for k, v in g.members(max_depth=None) if isinstance(v, zarr.Array)}


class Collect:
    """A consumer keeping what it is handed (copies), and when."""

    def __init__(self, fail_at: int | None = None):
        self.seen: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self.events: list[str] = []
        self.fail_at = fail_at

    def consume(self, hook, chunk_index, acts, tokens):
        if chunk_index == self.fail_at:
            raise OSError(f"consumer could not take chunk {chunk_index}")
        assert not acts.flags.writeable
        self.seen[(hook, chunk_index)] = (acts.copy(), tokens.copy())
        self.events.append(f"consume {chunk_index}")

    def save_state(self):
        self.events.append("save")

    def finish(self):
        self.events.append("finish")


def test_background_writer_same_bytes_and_consumers_see_every_chunk(tiny_root, tmp_path):
    ck, corpus = tiny_root / "models" / "solu_ln", tiny_root / "corpus"
    cfg = RecordConfig(text=CorpusText(corpus), n_tokens=2048, device="cpu", chunk_tokens=256, batch_size=8)
    inline, bg = tmp_path / "inline", tmp_path / "bg"
    record(ck, inline, cfg.replace(threaded=False), progress=False)
    consumer, stats = Collect(), RecordStats()
    record(ck, bg, cfg, progress=False, consumers=[consumer], stats=stats)
    a, b = _all_arrays(inline), _all_arrays(bg)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    s = Store.open(bg)
    assert s.complete and s.n_chunks == 8
    assert sorted(consumer.seen) == sorted((h, c) for h in s.hooks for c in range(8))
    for (h, c), (acts, toks) in consumer.seen.items():
        rows = slice(c * 256, (c + 1) * 256)
        np.testing.assert_array_equal(acts, s.activations(h)[rows])
        np.testing.assert_array_equal(toks, s.tokens[rows])
    # chunks in order, a save after each group (one chunk per group with batch 8 of 64-token contexts
    # = 512 rows = 2 chunks), finish last
    assert consumer.events[-1] == "finish" and consumer.events.count("save") == 4
    assert stats.write_s > 0 and stats.wait_s >= 0 and stats.bytes == 2048 * s.d_mlp * 2 * len(s.hooks)


def test_a_failing_consumer_stops_the_recording_and_keeps_what_is_on_disk(tiny_root, tmp_path):
    ck, corpus = tiny_root / "models" / "gelu", tiny_root / "corpus"
    out = tmp_path / "s"
    cfg = RecordConfig(text=CorpusText(corpus), n_tokens=2048, device="cpu", chunk_tokens=256)
    with pytest.raises(OSError, match="could not take chunk 3"):
        record(ck, out, cfg, progress=False, consumers=[Collect(fail_at=3)])
    s = Store.open(out)
    assert not s.complete
    done = zarr.open_group(out, mode="r")[schema.done_path("blocks.0.mlp.hook_post")][:]
    assert done[:4].all() and not done[4:].any()  # chunk 3 was written before its consumer ran (markers: checksums)
    record(ck, out, cfg, progress=False)  # the same command resumes
    ref = tmp_path / "ref"
    record(ck, ref, cfg.replace(threaded=False), progress=False)
    a, b = _all_arrays(ref), _all_arrays(out)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
