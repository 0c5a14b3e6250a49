"""Arguments and neighbours that would exhaust the machine or mix data: a second `record` into the same --out,
a --scheduler address where something other than a Dask scheduler answers, more local workers than the machine
holds, an index window far too large, text that is not a regular file or one enormous line."""

import http.server
import os
import socket
import threading

import numpy as np
import pytest

from tests.builders import run_cli


def test_a_second_record_into_the_same_out_refuses_while_the_first_runs(tiny_root, tmp_path):
    from store.format.atomic import record_lock

    out = tmp_path / "store"
    held = record_lock(out)  # what a running `record` holds for its whole run
    try:
        r = run_cli(["record", tiny_root / "models" / "gelu", "--out", out, "--corpus", tiny_root / "corpus",
                     "--tokens", "2048", "--device", "cpu", "--quiet"])
        assert r.returncode == 2 and "another `neurobrowse record` is writing into" in r.stderr, r.stderr
        assert list(out.iterdir()) == []  # nothing written
    finally:
        held.release()
    r = run_cli(["record", tiny_root / "models" / "gelu", "--out", out, "--corpus", tiny_root / "corpus",
                 "--tokens", "2048", "--device", "cpu", "--quiet"])
    assert r.returncode == 0, r.stderr  # the lock went with its holder


@pytest.fixture
def http_server():
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"tcp://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    t.join()


def test_a_scheduler_address_where_an_http_server_answers_is_a_clean_error(http_server):
    r = run_cli(["index", "/nonexistent-store", "--scheduler", http_server])
    assert r.returncode == 2 and "is not a Dask scheduler" in r.stderr and http_server in r.stderr, r.stderr


def test_a_scheduler_address_where_a_banner_answers_is_a_clean_error():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def banner():
        conn, _ = srv.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")  # 8 bytes that read as a huge frame count
        conn.close()

    t = threading.Thread(target=banner, daemon=True)
    t.start()
    from store.index.dask_cluster import SchedulerError, dask_client

    addr = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    with pytest.raises(SchedulerError, match="not a Dask handshake"):
        with dask_client(addr):
            pass
    t.join()
    srv.close()


def test_local_workers_are_capped_at_what_the_machine_holds():
    from store.index.dask_cluster import max_local_workers

    cap, why = max_local_workers()
    assert 1 <= cap <= 4 * (os.cpu_count() or 1) and "cores" in why


def test_an_index_window_too_large_for_memory_is_refused_before_any_work(tiny_stores):
    from store.errors import StoreError
    from store.format.reader import Store
    from store.index.run import check_index_memory, index_memory_bytes

    st = Store.open(tiny_stores["gelu"])
    assert index_memory_bytes(256, 32, 512, window=8193) > 50 * index_memory_bytes(256, 32, 512)
    check_index_memory(st, st.hooks, 1000, (64, 16))  # the default window: fits
    with pytest.raises(StoreError, match=r"--window 4096,4096 needs about \d+"):
        check_index_memory(st, st.hooks, 1000, (4096, 4096))


def test_one_enormous_line_is_tokenized_in_pieces(tmp_path):
    """A 5M-character line (no line break) is read in blocks and cut into pieces at whitespace: the stream is
    the line's tokens, one document; the pieces never exceed PIECE_CHARS characters."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from solu_core.corpus import text_streams as ts

    words = ("alpha", "beta", "gamma", "delta")
    text = " ".join(words[i % 4] for i in range(1_000_000))  # ~5.5M characters, one line
    f = tmp_path / "line.txt"
    f.write_text(text)
    stats = []
    pieces = list(ts._text_pieces([f], "text", stats))
    assert sum(start for start, _ in pieces) == 1 and len(pieces) > 4
    assert max(len(p) for _, p in pieces) <= ts.PIECE_CHARS and "".join(p for _, p in pieces) == text
    tok = Tokenizer(models.WordLevel({w: i + 1 for i, w in enumerate(words)} | {"[UNK]": 5}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    stream = ts.read_text_stream([f], tok, 0)
    assert stream.n_docs == 1 and len(stream.split.tokens) == 1_000_001
    assert np.array_equal(stream.split.tokens[1:9], [1, 2, 3, 4, 1, 2, 3, 4])


def test_text_that_is_not_a_regular_file_is_skipped_and_counted(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from solu_core.corpus import text_streams as ts

    d = tmp_path / "texts"
    d.mkdir()
    (d / "a.txt").write_text("alpha beta")
    os.mkfifo(d / "pipe")  # reading it would wait forever
    tok = Tokenizer(models.WordLevel({"alpha": 1, "beta": 2, "[UNK]": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    stream = ts.read_text_stream([d], tok, 0)
    assert stream.sources[0]["skipped_special"] == 1 and stream.n_docs == 1
    assert stream.split.tokens.tolist() == [0, 1, 2]
