"""Export (jsonl, csv, neuron-explainer) and `labels import` on real tiny stores and real SQLite."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.builders import run_cli as _cli
from store.export.neurons import ExportConfig, ExportError, LABEL_FIELDS, export_store
from store.measures.tokens_display import raw_piece
from store.export.label_files import export_labels, import_labels, read_label_file
from store.labels.db import LabelDB
from store.labels.label import LabelError, LabelImportError
from store.format.reader import Store

ROOT = Path(__file__).resolve().parents[1]


def _label_some(db: LabelDB, store: Store) -> dict:
    """A varied set of labels: unicode, commas, quotes, newlines, several tags, each verdict."""
    hook = store.hooks[0]
    want = {}
    specs = [
        (0, "interpretable", "closing ) in code", ["syntax", "code"], "line 1\nline 2, \"quoted\"", "ada"),
        (5, "not_interpretable", "", [], "", "bob"),
        (9, "unsure", "café ünïcödé, → arrows", ["weird,tag"], "", "ada"),
        (17, "interpretable", "indentation", ["code"], "n", "carol"),
        (store.d_mlp - 1, "interpretable", "last neuron", ["edge"], "", "bob"),
    ]
    for n, v, d, t, notes, author in specs:
        lab = db.set_label(store.run_uuid, hook, n, verdict=v, description=d, tags=t, notes=notes, author=author,
                           store=store)
        want[(hook, n)] = lab
    return want


def _fields(lab) -> tuple:
    return tuple(getattr(lab, f) for f in ("run_uuid", "hook", "layer", "neuron", *LABEL_FIELDS))


@pytest.mark.parametrize("fmt, gz", [("jsonl", False), ("jsonl", True), ("csv", False), ("csv", True)])
def test_export_then_import_round_trips_every_field(tmp_path, gelu, fmt, gz):
    db = LabelDB(tmp_path / "a.sqlite")
    want = _label_some(db, gelu)
    out = tmp_path / f"x.{fmt}"
    res = export_store(gelu, out, ExportConfig(fmt=fmt, gzip=gz, all_neurons=(fmt == "csv")), labels_db=db,
                       tool_version="9.9.9")
    assert res["n_neurons"] == (gelu.d_mlp * len(gelu.hooks) if fmt == "csv" else len(want))
    assert (out.read_bytes()[:2] == b"\x1f\x8b") == gz
    fresh = LabelDB(tmp_path / "b.sqlite")
    r = import_labels(fresh, out, store=gelu)
    assert r["written"] == len(want)
    got = fresh.snapshot(gelu.run_uuid)
    assert {k: _fields(v) for k, v in got.items()} == {k: _fields(v) for k, v in want.items()}
    # importing the same file again changes nothing
    assert import_labels(fresh, out, store=gelu)["written"] == 0


def test_labels_export_round_trip_and_cli(tmp_path, gelu):
    db = LabelDB(tmp_path / "a.sqlite")
    want = _label_some(db, gelu)
    export_labels(db, tmp_path / "labels.jsonl", run_uuid=gelu.run_uuid, tool_version="1")
    fresh = LabelDB(tmp_path / "b.sqlite")
    import_labels(fresh, tmp_path / "labels.jsonl")
    assert {k: _fields(v) for k, v in fresh.snapshot(gelu.run_uuid).items()} == {k: _fields(v) for k, v in want.items()}
    r = _cli(["labels", "export", "--db", str(tmp_path / "a.sqlite"), "--store", str(gelu.path), "--out",
              str(tmp_path / "l2.jsonl.gz"), "--gzip"])
    assert r.returncode == 0, r.stderr
    r = _cli(["labels", "import", str(tmp_path / "l2.jsonl.gz"), "--store", str(gelu.path), "--db",
              str(tmp_path / "c.sqlite")])
    assert r.returncode == 0, r.stderr
    assert f"imported {len(want)} label change(s)" in r.stdout


def test_jsonl_content_matches_the_store(tmp_path, gelu):
    db = LabelDB(tmp_path / "a.sqlite")
    _label_some(db, gelu)
    out = tmp_path / "x.jsonl"
    export_store(gelu, out, ExportConfig(snippets=20), labels_db=db, tool_version="9.9.9")
    lines = out.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert (header["run_uuid"], header["tool_version"], header["n_neurons"]) == (gelu.run_uuid, "9.9.9", 5)
    rec = json.loads(lines[1])
    view = gelu.neuron(rec["hook"], rec["neuron"])
    assert rec["label"]["description"] == "closing ) in code"
    assert rec["stats"]["max_act"] == pytest.approx(view.stats["max_act"])
    assert rec["stats"]["token_rule_score"] == pytest.approx(gelu.neuron_table(rec["hook"])["token_rule_score"][0])
    assert len(rec["top"]) == min(20, len(view.top))
    for snip, ref in zip(rec["top"], view.top):
        lo, hi = ref.ctx_lo, ref.ctx_hi  # exported: the tokens the model saw with the firing, one per context
        assert snip["tokens"] == [raw_piece(t) for t in ref.tokens[lo:hi]] and snip["center"] == ref.center - lo
        assert snip["position"] == ref.position and snip["more"] == ref.more
        np.testing.assert_allclose(snip["acts"], ref.acts[lo:hi], atol=5e-5)
        assert snip["tokens"][snip["center"]] == raw_piece(ref.tokens[ref.center])


def test_exports_keep_raw_token_strings_and_take_the_apps_neurons(tmp_path, gelu):
    """Issue 24, defect 13: JSONL and neuron-explainer exports hold the raw token strings (a real newline,
    not the app's ⏎ mark), and ``neurons=`` exports exactly the neurons the app asks for."""
    hook = gelu.hook_for(0, "hook_post")
    table = gelu.neuron_table(hook)
    picked = [int(n) for n in np.argsort(-np.asarray(table["max_act"]))[:6]]
    for fmt in ("jsonl", "neuron-explainer"):
        out = tmp_path / f"x.{fmt}.jsonl"
        summary = export_store(gelu, out, ExportConfig(fmt=fmt, neurons={hook: picked}, snippets=20))
        assert summary["n_neurons"] == len(picked)
        lines = out.read_text(encoding="utf-8").splitlines()
        recs = [json.loads(x) for x in (lines[1:] if fmt == "jsonl" else lines)]
        tokens = [t for r in recs for s in (r["top"] if fmt == "jsonl" else r["most_positive_activation_records"])
                  for t in s["tokens"]]
        assert not any("\u23ce" in t or "\u21e5" in t for t in tokens)
        assert any("\n" in t for t in tokens)  # the tiny stores are Python source: newlines fire somewhere
        got = sorted(r["neuron"] if fmt == "jsonl" else r["neuron_id"]["neuron_index"] for r in recs)
        assert got == sorted(picked)


def test_neuron_explainer_records(tmp_path, solu):
    db = LabelDB(tmp_path / "a.sqlite")
    hook = solu.hook_for(0, "hook_post")
    db.set_label(solu.run_uuid, hook, 3, verdict="interpretable")
    out = tmp_path / "ne.jsonl"
    export_store(solu, out, ExportConfig(fmt="neuron-explainer", snippets=12), labels_db=db, tool_version="1.2")
    meta = json.loads((tmp_path / "ne.jsonl.meta.json").read_text())
    assert (meta["run_uuid"], meta["tool_version"], meta["hooks"]) == (solu.run_uuid, "1.2", [hook])
    (line,) = out.read_text().splitlines()
    rec = json.loads(line)
    assert set(rec) == {"dataclass_name", "neuron_id", "random_sample", "random_sample_by_quantile",
                        "quantile_boundaries", "mean", "variance", "skewness", "kurtosis",
                        "most_positive_activation_records"}
    assert rec["dataclass_name"] == "NeuronRecord"
    assert rec["neuron_id"] == {"dataclass_name": "NeuronId", "layer_index": 0, "neuron_index": 3}
    view = solu.neuron(hook, 3)
    assert len(rec["most_positive_activation_records"]) == min(12, len(view.top))
    top = rec["most_positive_activation_records"][0]
    t0 = view.top[0]
    assert top["dataclass_name"] == "ActivationRecord"
    assert top["tokens"] == [raw_piece(t) for t in t0.tokens[t0.ctx_lo:t0.ctx_hi]]
    assert max(top["activations"]) == pytest.approx(view.stats["max_act"], abs=1e-3)
    assert len(rec["random_sample_by_quantile"]) == 5
    bins = ("0-0.5", "0.5-0.9", "0.9-0.99", "0.99-0.999", "0.999-1")
    assert [len(b) for b in rec["random_sample_by_quantile"]] == [len(view.samples[b]) for b in bins]
    assert len(rec["random_sample"]) == len(view.samples["random"])
    bounds = rec["quantile_boundaries"]
    assert len(bounds) == 6 and bounds == sorted(bounds)
    assert rec["variance"] == pytest.approx(view.stats["var"])
    for r in rec["random_sample"]:
        assert len(r["tokens"]) == len(r["activations"])
    (eline,) = (tmp_path / "ne.jsonl.explanations.jsonl").read_text().splitlines()
    expl = json.loads(eline)
    assert expl["dataclass_name"] == "NeuronSimulationResults" and expl["neuron_id"] == rec["neuron_id"]
    words = solu.neuron_table(hook)["explanation"][3]
    assert [e["explanation"] for e in expl["scored_explanations"]] == ([words] if words else [])
    assert {h.rsplit(".", 1)[1] for h in solu.hooks} == {"hook_mid", "hook_post"}  # SoLU-LN records both
    with pytest.raises(ExportError, match="one hook kind"):
        export_store(solu, tmp_path / "bad", ExportConfig(fmt="neuron-explainer", hooks=solu.hooks), labels_db=db)


def test_filters_select_the_right_neurons(tmp_path, gelu):
    db = LabelDB(tmp_path / "a.sqlite")
    _label_some(db, gelu)
    hook = gelu.hooks[0]

    def neurons(**kw):
        out = tmp_path / "f.jsonl"
        export_store(gelu, out, ExportConfig(**kw), labels_db=db)
        return [json.loads(x)["neuron"] for x in out.read_text().splitlines()[1:]]

    assert neurons(verdicts=["interpretable"]) == [0, 17, gelu.d_mlp - 1]
    assert neurons(tags=["code"]) == [0, 17]
    assert neurons(tags=["edge"], verdicts=["interpretable"]) == [gelu.d_mlp - 1]
    assert neurons(layers=[0], verdicts=["interpretable"]) == [0, 17, gelu.d_mlp - 1]
    with pytest.raises(ExportError, match="--layer 5: .* has no such layer"):  # not an empty export
        neurons(layers=[5])
    table = gelu.neuron_table(hook)
    cut = float(np.median(table["sim_score"]))
    expect = sorted(int(n) for n in np.flatnonzero(table["sim_score"] >= cut))
    assert neurons(all_neurons=True, min_scores={"sim_score": cut}) == expect
    labeled = [0, 5, 9, 17, gelu.d_mlp - 1]
    assert neurons(min_scores={"sim_score": cut}) == [n for n in labeled if n in expect]
    with pytest.raises(ExportError, match="not a numeric neuron statistic"):
        neurons(min_scores={"nonsense": 1.0})


def test_import_faults_import_nothing(tmp_path, gelu, solu):
    db = LabelDB(tmp_path / "a.sqlite")
    _label_some(db, gelu)
    out = tmp_path / "x.jsonl"
    export_store(gelu, out, ExportConfig(), labels_db=db)
    target = LabelDB(tmp_path / "t.sqlite")
    # a label file of another store
    with pytest.raises(LabelImportError, match=f"run UUID {gelu.run_uuid}.*not of"):
        import_labels(target, out, store=solu)
    r = _cli(["labels", "import", str(out), "--store", str(solu.path), "--db", str(tmp_path / "t.sqlite")])
    assert r.returncode == 2 and "labels only attach to the recording" in r.stderr
    # a malformed line: error names the line; nothing imported
    lines = out.read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:3] + ['{"run_uuid": broken'] + lines[4:]) + "\n", encoding="utf-8")
    with pytest.raises(LabelImportError, match=r"bad.jsonl, line 4: not valid JSON"):
        import_labels(target, bad, store=gelu)
    bad.write_text("\n".join(lines[:2] + [lines[2].replace('"verdict":"not_interpretable"', '"verdict":"meh"')]
                             + lines[3:]) + "\n", encoding="utf-8")
    with pytest.raises(LabelImportError, match=r"line 3: unknown verdict 'meh'"):
        import_labels(target, bad, store=gelu)
    # a truncated file (fewer lines than its header says)
    bad.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(LabelImportError, match="truncated"):
        import_labels(target, bad)
    # a label for a neuron the store does not have
    rec = json.loads(lines[1])
    rec["neuron"] = 10**6
    bad.write_text("\n".join(lines[:1] + [json.dumps(rec)] + lines[2:]) + "\n", encoding="utf-8")
    with pytest.raises(LabelError, match="neuron 1000000 .* does not exist"):
        import_labels(target, bad, store=gelu)
    assert target.labels() == [] and target.count_events() == 0


def test_cli_set_and_export_faults(tmp_path, gelu):
    dbp = str(tmp_path / "a.sqlite")
    r = _cli(["labels", "set", str(gelu.path), "0", str(gelu.d_mlp + 5), "--verdict", "unsure", "--db", dbp])
    assert r.returncode == 2 and f"neuron {gelu.d_mlp + 5} of blocks.0.mlp.hook_post does not exist" in r.stderr
    r = _cli(["labels", "set", str(gelu.path), "blocks.7.mlp.hook_post", "1", "--verdict", "unsure", "--db", dbp])
    assert r.returncode == 2 and "no hook 'blocks.7.mlp.hook_post'" in r.stderr
    r = _cli(["labels", "set", str(gelu.path), "0", "4", "--verdict", "interpretable", "--description", "x y",
              "--tag", "t1", "--db", dbp])
    assert r.returncode == 0, r.stderr
    r = _cli(["labels", "history", str(gelu.path), "0", "4", "--db", dbp])
    assert r.returncode == 0 and "interpretable" in r.stdout and "x y [t1]" in r.stdout
    out = tmp_path / "e.csv"
    r = _cli(["export", str(gelu.path), "--format", "csv", "--verdict", "interpretable", "--min-score", "max_act=-100",
              "--out", str(out), "--db", dbp, "--quiet"])
    assert r.returncode == 0, r.stderr
    assert "exported 1 neuron(s)" in r.stdout and gelu.run_uuid in out.read_text()
    r = _cli(["export", str(gelu.path), "--min-score", "abc=x", "--out", str(out), "--db", dbp])
    assert r.returncode == 2 and "--min-score" in r.stderr


def test_failed_export_keeps_the_old_file(tmp_path, gelu):
    """A store chunk that fails its checksum half-way: the previous export stays, no temp file left."""
    copy = tmp_path / "store"
    shutil.copytree(gelu.path, copy)
    store = Store.open(copy)
    out = tmp_path / "x.jsonl"
    out.write_text("previous export\n")
    arr_dir = copy / "index" / store.hooks[0] / "distinct_top_context_acts" / "c"
    chunks = sorted(p for p in arr_dir.rglob("*") if p.is_file())
    assert len(chunks) > 1
    last = chunks[-1]
    last.write_bytes(last.read_bytes()[:-7] + b"garbage")
    from store.errors import NeurobrowseError

    with pytest.raises(NeurobrowseError, match="distinct_top_context_acts"):
        export_store(store, out, ExportConfig(all_neurons=True, block=8))
    assert out.read_text() == "previous export\n"
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


_GEN_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from store.labels.db import LabelDB
    from store.labels.label import Label
    db = LabelDB(sys.argv[1], busy_timeout_s=60)
    g = 0
    while True:
        # one transaction relabels neurons 0..19 with the same generation number
        db.set_many([Label({run!r}, {hook!r}, n, "interpretable", description=f"gen {{g}}") for n in range(20)],
                    skip_unchanged=False)
        print(g, flush=True)
        g += 1
""")


def test_export_while_labels_are_written_is_consistent(tmp_path, gelu):
    path = tmp_path / "a.sqlite"
    LabelDB(path).close()
    code = _GEN_WRITER.format(root=str(ROOT), run=gelu.run_uuid, hook=gelu.hooks[0])
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # the writer is running
        db = LabelDB(path)
        gens_seen = set()
        for i in range(4):
            out = tmp_path / f"x{i}.jsonl"
            export_store(gelu, out, ExportConfig(snippets=2), labels_db=db)
            _, labs = read_label_file(out)
            assert len(labs) == 20
            gens = {lab.description for lab in labs}
            assert len(gens) == 1, gens  # one snapshot: every neuron from the same transaction
            gens_seen |= gens
            proc.stdout.readline()  # let at least one more generation land before the next export
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert len(gens_seen) >= 2  # the exports did run while the labels were changing





def test_disk_full_during_export_keeps_the_old_file(tmp_path, gelu):
    """The export process may only write 64 kB (RLIMIT_FSIZE: writes past it fail like a full disk):
    a clear error, exit 2, the previous export untouched, no temporary file left."""
    import resource
    import signal

    out = tmp_path / "x.jsonl"
    out.write_text("previous export\n")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    r = subprocess.run([sys.executable, "-m", "neurobrowse", "export", str(gelu.path), "--all", "--quiet", "--out",
                        str(out), "--db", str(tmp_path / "l.sqlite")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, preexec_fn=limit)
    assert r.returncode == 2, r.stderr
    assert "error: writing" in r.stderr and "previous file, if any, is unchanged" in r.stderr
    assert out.read_text() == "previous export\n"
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
