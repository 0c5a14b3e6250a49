"""Indexing a store on a Dask cluster: the same result as ``store.index.index_store``, split
by whole chunk ranges over workers.

The work is store.index's, unchanged: per chunk range a pass-1 partial (``compute_partial``,
the same Numba kernels), merged by ``merge_partials`` in a *fixed* binary tree over the ranges in
chunk order (so the floating-point moments come out the same on every run, whichever worker
finishes first or is retried), then ``sample_thresholds`` of the merged histogram, a pass-2
partial per range (``compute_sample_partial``), its tree of ``merge_sample_partials``, and one
``finalize_index`` task that writes ``index/{hook}/`` once, ``complete`` last.

Everything is submitted up front as futures (all hooks at once, so one hook's merges overlap
another's scans); dask keeps the partials on the workers, and only small summaries come back to
the client. Tasks are pure functions of the store (paths in, arrays out), so Dask may rerun any of
them on another worker when one dies (``distributed.scheduler.allowed-failures`` times).

Resume: the merged pass-1 (and pass-2) results are saved into the index group with the indexer's
own resume state (``IndexGroup``), so a killed client resumes at the last finished
pass of each hook; a single-process ``neurobrowse index`` resumes from the same state and a
partial single-process pass-1 state is picked up here (its chunks are not scanned again).

Relative to the single-process index: top-k / bottom-k values, positions and windows, samples,
histograms and counts are identical bit for bit (exact merges under one total order); moments,
token sums and the scores computed from them agree within floating-point rounding (they are
summed in another order).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import index
from store import schema
from store.errors import StoreError


@dataclass
class DaskIndexConfig:
    chunks_per_task: int | None = None  # chunks scanned by one task; None: ~tasks_per_worker tasks per worker per
    #   hook, but at least min_chunks_per_task while that still gives every worker a task
    tasks_per_worker: int = 4  # tasks per worker and hook when chunks_per_task is None (load balance vs overhead)
    # A merge of two pass-1 partials adds their [2, vocab, neurons] float64 token sums: 0.1-0.7 s, the
    # cost of scanning 10-70 chunks, so small stores get fewer, longer tasks (65k tokens x 2 hooks on
    # local:1: 16 chunks per hook in 1 task instead of 4, index 1.46x -> see benchmarks/RESULTS.md "Dask")
    min_chunks_per_task: int = 32
    seed: int = schema.SAMPLE_SEED  # seed of the sample-drawing hash (as IndexConfig.seed)
    prefetch: bool = True  # read the next chunks in threads inside each task (store.index.source.READ_AHEAD)


# ---- tasks (run on workers; module-level so they pickle by reference) -----------------------------------


def _load_state(path: str, hook: str, which: str):
    """The saved partial of ``which`` ("p1" / "p2") for ``hook``, or None."""
    part, _prog = index.IndexGroup(path, hook).load_state(which)
    return part


def _save_state(path: str, hook: str, which: str, part, n_chunks: int):
    """Save a merged partial as the hook's resume state for ``which``; returns it (chains the tree)."""
    index.IndexGroup(path, hook).save_state(which, part, n_chunks)
    return part


def _finalize(path: str, hook: str, p1, p2, seed: int) -> dict:
    summary = index.finalize_index(path, hook, p1, p2, seed)
    index.IndexGroup(path, hook).prune_state()
    return summary


def _p2_valid(path: str, hook: str, qbin: np.ndarray) -> bool:
    """True when the saved pass-2 state was drawn with these quantile thresholds (then it resumes)."""
    saved = _load_state(path, hook, "p2")
    return saved is not None and np.array_equal(saved.qbin, qbin)


# ---- the driver -------------------------------------------------------------------------------------------


def _ranges(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(stop, a + size)) for a in range(start, stop, size)]


def _tree(client, leaves: list, merge, key: str, priority: int) -> object:
    """Reduce futures in a fixed pairwise tree (leaf order = chunk order); returns the root future."""
    level, depth = list(leaves), 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            nxt.append(client.submit(merge, level[i], level[i + 1], key=f"{key}-d{depth}-{i // 2}",
                                     priority=priority))
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
    return level[0]


def index_store_dask(path, client, *, hooks: list[str] | None = None, k: int = schema.DEFAULT_K,
                     force: bool = False, progress: bool = True, config: DaskIndexConfig | None = None,
                     window: tuple[int, int] | None = None) -> dict:
    """Index every (or the named) hook of the store at ``path`` on the Dask cluster of ``client``.

    Same arguments, refusals, resume state and result as ``store.index.index_store``; returns a
    summary per hook. The store's path must be the same on the workers (shared file system).
    """
    from store.index.dask_cluster import dask_errors, n_workers, progress_bar

    from contextlib import ExitStack

    from store.format import atomic

    cfg = config or DaskIndexConfig()
    window = index.check_window(window or (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER))
    if k < 1:
        raise StoreError(f"--k must be at least 1 (got {k})")
    st = index.open_store(path)
    wanted = index.indexable_hooks(st, hooks)
    index.check_index_memory(st, wanted, k)
    with ExitStack() as locks:  # the same per-hook locks as the single-process index: one run at a time
        for hook in wanted:
            locks.enter_context(atomic.hook_lock(st.path, hook))
        return _index_hooks(st, wanted, client, k, force, progress, cfg, dask_errors, n_workers, progress_bar,
                            window)


def _index_hooks(st, wanted: list[str], client, k: int, force: bool, progress: bool, cfg: DaskIndexConfig,
                 dask_errors, n_workers, progress_bar, window: tuple[int, int]) -> dict:
    spath = str(Path(st.path).absolute())
    ct = int(st.chunk_tokens)
    n_chunks = schema.n_chunks(int(st.n_tokens), ct)
    workers = n_workers(client)
    per_task = cfg.chunks_per_task or max(1, -(-n_chunks // (workers * max(1, cfg.tasks_per_worker))),
                                          min(-(-n_chunks // workers), cfg.min_chunks_per_task))
    run = uuid.uuid4().hex[:8]  # keys unique to this run (a rerun must not pick up old results)

    out: dict[str, dict] = {}
    finals: dict[str, object] = {}
    weights: dict[str, int] = {}  # leaf future key -> tokens it scans (progress bar units)
    leaves: list = []
    done_tokens = 0
    for h_i, hook in enumerate(wanted):
        grp = index.IndexGroup(st.path, hook)
        skip = grp.begin(st.run_uuid, k, cfg.seed, force, window)
        if skip is not None:
            out[hook] = skip
            continue
        prio = -h_i  # earlier hooks first
        tag = f"neurobrowse-index-{run}-{hook}"

        def scan(which, func, start, args, merge):
            """Leaves over chunks [start, n_chunks) after an optional saved prefix, merged in a tree."""
            nonlocal done_tokens
            parts = []
            if start > 0:
                parts.append(client.submit(_load_state, spath, hook, which, key=f"{tag}-{which}-load", priority=prio))
                done_tokens += min(st.n_tokens, start * ct)
            for a, b in _ranges(start, n_chunks, per_task):
                f = client.submit(func, spath, hook, a, b, *args, cfg.prefetch, window,
                                  key=f"{tag}-{which}-{a}:{b}", priority=prio)
                parts.append(f)
                leaves.append(f)
                weights[f.key] = min(st.n_tokens, b * ct) - a * ct
            root = _tree(client, parts, merge, f"{tag}-{which}-merge", prio)
            if start >= n_chunks:
                return root  # loaded whole: already saved
            return client.submit(_save_state, spath, hook, which, root, n_chunks, key=f"{tag}-{which}-save",
                                 priority=prio)

        # pass 1: resume from a saved prefix (single-process or dask), scan the rest, merge, save
        p1_stop = min(n_chunks, grp.saved_stop("p1"))
        p1 = scan("p1", index.compute_partial, p1_stop, (k,), index.merge_partials)
        # pass 2: thresholds from the merged histogram; a saved prefix counts only if drawn with them
        qbin = client.submit(index.sample_thresholds, p1, key=f"{tag}-qbin", priority=prio)
        p2_stop = min(n_chunks, grp.saved_stop("p2"))
        if p2_stop and not client.submit(_p2_valid, spath, hook, qbin, key=f"{tag}-p2-check").result():
            p2_stop = 0
        p2 = scan("p2", index.compute_sample_partial, p2_stop, (qbin, cfg.seed), index.merge_sample_partials)
        finals[hook] = client.submit(_finalize, spath, hook, p1, p2, cfg.seed, key=f"{tag}-finalize",
                                     priority=prio)
        del p1, p2, qbin  # the scheduler keeps what the finalize task needs, and frees the rest as it goes

    # Only the final futures are kept here: a leaf's partial is freed on its worker once merged
    # (cancelling the finals releases everything they depend on).
    pending = list(finals.values())
    with dask_errors(f"indexing {spath}"):
        try:
            if leaves:
                it = progress_bar(leaves, total=sum(weights.values()) + done_tokens, initial=done_tokens,
                                  desc=f"index {Path(spath).name} (dask)", unit="tok", enabled=progress,
                                  weights=weights)
                leaves = []  # the iterator holds them until each is done
                for fut in it:
                    if fut.status == "error":
                        fut.result()  # raise the task's error here (a NeurobrowseError names the chunk)
            for hook, fut in finals.items():
                out[hook] = fut.result()
        except BaseException:
            try:
                client.cancel(pending)  # a failed task or Ctrl-C: stop the rest; saved passes stay for a resume
            except Exception:  # the scheduler is gone: nothing left to cancel
                pass
            raise
    return {h: out[h] for h in wanted}


# ---- indexing while recording on Dask (solu_core.dask_record) ----------------------------------------
# A recording task ("leaf": a fixed range of work groups) folds the chunks it records into a pass-1
# partial and unit samples (store.index.stream.ChunkFold) and saves them in the index group, each leaf
# in a group of its own; the driver merges the leaves' results in a fixed tree in chunk order and
# finishes the index as `record --index` does (store.index.stream.finish_hook).

LEAVES_ATTR = "dask_leaves"  # index group attribute: the recording's leaves, fixed for the run and its resumes


def leaf_name(g0: int, g1: int) -> str:
    return f"leaf_{g0}_{g1}"


@dataclass
class StreamIndexPlan:
    """What a recording on Dask indexes and how its work groups are cut into leaves.

    Leaf 0 holds the work groups of the first ``hold`` chunks (store.index.stream.provisional_chunks):
    it runs first, and the units its first ``hold`` chunks fix are handed to every other leaf, so
    the samples are those of the single-process `record --index`. The leaves are saved in the index
    group's attributes at the first run, so a resumed run merges the same tree (the same floats)."""

    path: str
    hooks: list[str]  # hooks indexed (those not indexed yet)
    leaves: list[tuple[int, int]]  # work group ranges [g0, g1), in chunk order
    saved: set[int]  # leaves whose results are saved whole (not recomputed)
    spec: dict  # what a worker's ChunkFold needs: k, seed, window, vocab, context_len, chunk_tokens, hold;
    #   save_after_s: a leaf that ran this long saves its results (IndexConfig.checkpoint_every_s; a
    #   shorter one is cheaper to run again than to save: its unit samples are ~90 KB per neuron and hook)


def plan_stream_index(path, per_group: int, groups_per_leaf: int, config: index.IndexConfig | None = None
                      ) -> StreamIndexPlan | None:
    """Begin (or resume) the index of the store being recorded at ``path`` (every hook's index group);
    None when every hook is already indexed."""
    from store.index.source import vocab_size
    from store.index.stream import provisional_chunks

    cfg = config or index.IndexConfig()
    window = index.check_window(cfg.window)
    st = index.open_store(path)
    ct = int(st.chunk_tokens)
    n_chunks = schema.n_chunks(int(st.n_tokens), ct)
    n_groups = -(-n_chunks // per_group)
    hold = provisional_chunks(n_chunks, ct, int(st.d_mlp))
    first = -(-hold // per_group)
    fresh = [(0, first)] + [(g, min(n_groups, g + groups_per_leaf)) for g in range(first, n_groups, groups_per_leaf)]
    want = {"per_group": per_group, "n_chunks": n_chunks}
    hooks, groups = [], {}
    for hook in st.recorded_hooks:  # the record --index path on Dask: recorded hooks only
        grp = index.IndexGroup(st.path, hook)
        if grp.begin(st.run_uuid, cfg.k, cfg.seed, False, window) is None:
            hooks.append(hook)
            groups[hook] = grp
    if not hooks:
        return None
    saved_plans = [grp.attrs.get(LEAVES_ATTR) for grp in groups.values()]
    ok = all(p and {k: p.get(k) for k in want} == want for p in saved_plans) and \
        all(p["leaves"] == saved_plans[0]["leaves"] for p in saved_plans)
    leaves = [tuple(x) for x in saved_plans[0]["leaves"]] if ok else fresh
    saved = None
    for grp in groups.values():
        if not ok:  # another cut of the work: what was saved for it does not merge into this run
            grp.drop_state()
            grp.set_attrs(**{LEAVES_ATTR: {**want, "leaves": [list(x) for x in leaves]}})
        grp.require_state_group()
        names = grp.part_names()
        have = {i for i, (g0, g1) in enumerate(leaves) if leaf_name(g0, g1) in names}
        saved = have if saved is None else saved & have
    spec = {"hooks": hooks, "k": cfg.k, "seed": cfg.seed, "window": list(window), "vocab": vocab_size(st),
            "context_len": int(st.context_len), "chunk_tokens": ct, "hold": hold,
            "save_after_s": float(cfg.checkpoint_every_s)}
    return StreamIndexPlan(str(Path(st.path).absolute()), hooks, leaves, saved, spec)


def _load_leaf(path: str, hook: str, name: str) -> tuple:
    parts = index.IndexGroup(path, hook).load_part(name)
    return parts["p1"], parts["s1"]


def _pick(result, hook: str) -> tuple:
    return result[0][hook]


def _units(pair) -> np.ndarray:
    return pair[1].umap


def _merge_leaves(a: tuple, b: tuple) -> tuple:
    from store.index.unit_samples import merge_unit_samples

    return index.merge_partials(a[0], b[0]), merge_unit_samples(a[1], b[1])


def _needs_pass2(path: str, root: tuple) -> np.ndarray | None:
    """The quantile thresholds when a dense store must be read again for the samples of some neuron
    (not certified from the leaves' unit samples), else None."""
    p1, s1 = root
    if not index.open_store(path).dense:
        return None
    qbin = index.sample_thresholds(p1)
    return None if s1.certified(qbin, p1.hist).all() else qbin


def _finish_streamed(path: str, hook: str, root: tuple, seed: int, window: list, pass2=None) -> dict:
    from store.index.stream import finish_hook

    p1, s1 = root
    st = index.open_store(path)
    grp = index.IndexGroup(path, hook)
    grp.save_states({"p1": p1, "s1": s1}, schema.n_chunks(int(st.n_tokens), int(st.chunk_tokens)), quick=True)
    return finish_hook(st, hook, grp, p1, s1, seed, tuple(window), pass2)


def stream_index_leaves(client, plan: StreamIndexPlan, run_leaf, tag: str) -> tuple[dict, list]:
    """Submit every leaf: a saved one is loaded, the others run by ``run_leaf(i, g0, g1, units)``
    (a function returning the future of a task that returns ({hook: (p1, s1)}, stats); ``units`` is
    None for leaf 0, else {hook: future of leaf 0's units}). Returns ({hook: future of the merged
    (p1, s1)}, [(leaf index, future) of the leaves run])."""
    per_hook: dict[str, list] = {h: [] for h in plan.hooks}
    run: list = []
    units = None
    for i, (g0, g1) in enumerate(plan.leaves):
        if i in plan.saved:
            for h in plan.hooks:
                per_hook[h].append(client.submit(_load_leaf, plan.path, h, leaf_name(g0, g1),
                                                 key=f"{tag}-load-{h}-{i}"))
        else:
            fut = run_leaf(i, g0, g1, units)
            run.append((i, fut))
            for h in plan.hooks:
                per_hook[h].append(client.submit(_pick, fut, h, key=f"{tag}-pick-{h}-{i}"))
        if i == 0:
            units = {h: client.submit(_units, per_hook[h][0], key=f"{tag}-units-{h}") for h in plan.hooks}
    roots = {h: _tree(client, leaves, _merge_leaves, f"{tag}-merge-{h}", 0) for h, leaves in per_hook.items()}
    return roots, run


def stream_index_finish(client, plan: StreamIndexPlan, roots: dict, tag: str, chunks_per_task: int = 8) -> dict:
    """Write the index of every planned hook from its merged leaves (the store's recording must be
    finished); a hook of a dense store with samples not certified from the leaves gets pass 2 on the
    workers (chunk ranges of ``chunks_per_task``, merged in a fixed tree). Returns a summary per hook."""
    st = index.open_store(plan.path)
    n_chunks = schema.n_chunks(int(st.n_tokens), int(st.chunk_tokens))
    checks = {h: client.submit(_needs_pass2, plan.path, roots[h], key=f"{tag}-check-{h}") for h in plan.hooks}
    finals = {}
    for h in plan.hooks:
        pass2 = None
        if checks[h].result() is not None:
            parts = [client.submit(index.compute_sample_partial, plan.path, h, a, b, checks[h], plan.spec["seed"],
                                   True, tuple(plan.spec["window"]), key=f"{tag}-p2-{h}-{a}:{b}")
                     for a, b in _ranges(0, n_chunks, chunks_per_task)]
            pass2 = _tree(client, parts, index.merge_sample_partials, f"{tag}-p2-merge-{h}", 0)
        finals[h] = client.submit(_finish_streamed, plan.path, h, roots[h], plan.spec["seed"], plan.spec["window"],
                                  pass2, key=f"{tag}-finish-{h}")
    return {h: f.result() for h, f in finals.items()}


def index_store_on(scheduler: str | None, path, *, hooks: list[str] | None = None, k: int = schema.DEFAULT_K,
                   force: bool = False, progress: bool = True, window: tuple[int, int] | None = None) -> dict:
    """Index a store in this process (``scheduler`` None: ``store.index.index_store``) or on the Dask
    cluster ``scheduler`` names (``index_store_dask``); the same index either way."""
    from store.index.dask_cluster import local_or_dask

    kw = dict(hooks=hooks, k=k, force=force, progress=progress, window=window)
    return local_or_dask(scheduler, lambda: index.index_store(path, **kw),
                         lambda client: index_store_dask(path, client, **kw))


__all__ = ["DaskIndexConfig", "StreamIndexPlan", "index_store_dask", "index_store_on", "plan_stream_index",
           "stream_index_finish", "stream_index_leaves"]
