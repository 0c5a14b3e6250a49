"""The writable ``index/{hook}`` group of a store: the final index arrays, their attributes, and the
resume state of an indexing run.

Resume state: a running partial result is saved into alternating slots under
``index/{hook}/_state`` and a small ``progress`` attribute naming the valid slot (and the chunks it
covers) is written last, so a process killed at any point leaves the previous save valid. The
single-process indexer (store.index.run) and the Dask indexer (store.index.dask_run) use the same
state, through ``IndexGroup.begin`` / ``saved_stop`` / ``load_state`` / ``save_state`` /
``prune_state``, so either resumes what the other began.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

from store.format import chunkio
from store import schema
from store.errors import StoreError
from store.format import seal
from store.index.partial import PartialIndex
from store.index.samples import SamplePartial
from store.index.unit_samples import UnitSamples
from store.measures.snippets import index_window

# which saved state holds which partial result
STATE_CLASSES = {"p1": PartialIndex, "s1": UnitSamples, "p2": SamplePartial}


def _disk_errors(where: str):
    """Context manager: OSError while writing -> StoreError that says what happened and how to go on."""

    class _Guard:
        def __enter__(self):
            return self

        def __exit__(self, et, e, tb):
            if et is None or not issubclass(et, OSError):
                return False
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreError(f"the disk is full ({e.strerror}) while writing {where}; free some space and run "
                                 "the same command again: the index resumes from its last saved point") from e
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise StoreError(f"cannot write {where} ({e.strerror}); index a store you may write to") from e
            raise StoreError(f"writing {where} failed ({e}); run the same command again to resume") from e

    return _Guard()


def _direct_chunk_jobs(root: Path, arr: zarr.Array, a: np.ndarray) -> list | None:
    """Callables that write every chunk file of the new array ``arr`` with the data ``a`` directly
    (the bytes zarr would write: C-order little-endian chunk padded with the fill value 0 to the full
    chunk shape, zstd-compressed when the array has a zstd codec, then its Crc32c), or None when
    ``arr``'s layout is not one of those (then zarr writes it). Chunked along one axis at most.

    Why: zarr's setitem spends ~1 ms of event-loop overhead per chunk, and an index has ~2800 small
    chunks (2048 neurons, 16 per chunk, 22 arrays). Files are written in place: the index's
    ``complete`` attribute (or a state's slot pointer) is written after all of them."""
    layout = schema.chunk_codec_layout(arr)
    if layout is None or arr.metadata.fill_value != 0:
        return None
    split = [i for i, (cs, n) in enumerate(zip(arr.chunks, a.shape)) if cs < n]
    if len(split) > 1:
        return None
    if a.size == 0:
        return []
    level = arr.metadata.codecs[1].level if layout == "zstd" else 0
    ax = split[0] if split else 0
    cs = arr.chunks[ax] if split else a.shape[0]

    def job(i: int):
        sel = [slice(None)] * a.ndim
        sel[ax] = slice(i * cs, (i + 1) * cs)
        payload = chunkio.encode(a[tuple(sel)], arr.dtype, arr.chunks, layout, level)
        os.makedirs(files[i].parent, exist_ok=True)  # its folder, on the writing thread (thousands of mkdirs)
        return chunkio.write_file(files[i], payload)  # its checksum: the array's record (store.format.seal)

    files = []
    for i in range(-(-a.shape[ax] // cs) if split else 1):
        coords = [0] * a.ndim
        coords[ax] = i
        files.append(chunkio.chunk_path(root, arr.path, tuple(coords)))
    return [lambda i=i: job(i) for i in range(len(files))]


class IndexGroup:
    """The writable index/{hook} group of a store: final arrays, attrs and the resume state.

    A finished index is never rebuilt in place: ``begin`` puts a rebuild (``--force``, another k or
    seed) in index/_rebuild/{hook}, beside the index readers use, and ``write_index`` swaps the two
    folders in one step once the new one is whole (store.format.atomic.exchange). While a rebuild is under
    way every IndexGroup of the hook (a Dask task's too) works on it."""

    def __init__(self, path, hook: str, on_checkpoint=None):
        self.path = Path(path)
        self.hook = hook
        self.on_checkpoint = on_checkpoint  # callable(hook, which, chunk_stop) after each save
        self.where = f"the index of {hook} in {self.path}"
        self.discarded_states: list[str] = []  # saved states found damaged (and discarded) by load_state
        self._target((self.path / schema.index_rebuild_path(hook)).is_dir())

    def _target(self, rebuild: bool) -> None:
        self.rebuild = rebuild
        self.rel = schema.index_rebuild_path(self.hook) if rebuild else schema.index_path(self.hook)
        self._drop_if_damaged()
        with _disk_errors(self.where):
            g = zarr.open_group(LocalStore(self.path), mode="r+")
            for part in self.rel.split("/"):
                g = g.require_group(part)
            self.group = g

    def _drop_if_damaged(self) -> None:
        """A group whose zarr.json is not a group's metadata is no usable index (nor resume state):
        remove it, so that indexing starts it again instead of failing to open it."""
        meta = self.path / self.rel / "zarr.json"
        try:
            doc = json.loads(meta.read_text())
            ok = isinstance(doc, dict) and doc.get("node_type") == "group"
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            ok = False
        if not ok:
            with _disk_errors(self.where):
                shutil.rmtree(self.path / self.rel)

    def _reopen(self) -> None:
        """Read the group's metadata again (another IndexGroup of the same hook may have written it)."""
        with _disk_errors(self.where):
            self.group = zarr.open_group(LocalStore(self.path), mode="r+", path=self.rel)

    @property
    def attrs(self) -> dict:
        return dict(self.group.attrs)

    def set_attrs(self, **kv) -> None:
        self._reopen()
        with _disk_errors(self.where):
            self.group.attrs.update(kv)

    def begin(self, run_uuid: str, k: int, seed: int, force: bool,
              window: tuple[int, int] = (schema.CONTEXT_BEFORE, schema.CONTEXT_AFTER)) -> dict | None:
        """Start (or resume) indexing this hook: drop an index of another recording, k or seed, a
        half-made one of other windows (or any, with ``force``) and mark the group as being indexed.
        Returns the summary of a skipped hook when it is already indexed (and not ``force``; a
        finished index of other windows is kept and the summary says so), else None. A finished
        index is kept (and read) until its rebuild beside it is whole; an interrupted rebuild of the
        same recording, k, seed and windows is resumed."""
        window = [int(window[0]), int(window[1])]

        def differs(attrs: dict) -> bool:
            return bool(attrs) and (attrs.get("run_uuid_indexing", run_uuid) != run_uuid
                                    or attrs.get("k_indexing", k) != k or attrs.get("seed_indexing", seed) != seed
                                    or (not attrs.get("complete") and attrs.get("window_indexing", window) != window))

        had_rebuild = self.rebuild
        self._target(False)
        live = self.attrs
        done = list(index_window(live))
        if live.get("complete") and not force and not differs(live) and done != window:
            return {"hook": self.hook, "skipped": True,
                    "reason": f"already indexed with windows of {done[0]},{done[1]} tokens; add --force to index "
                              f"again with {window[0]},{window[1]}"}
        if not live.get("complete"):  # nothing readers use yet: (re)build in place
            self._drop_rebuild()
            if force or differs(live):
                self.clear()
        elif force or differs(live):  # build beside the finished index (resuming a rebuild like this one)
            self._target(True)
            if differs(self.attrs):
                self.clear()
        elif had_rebuild:  # an interrupted rebuild of the same recording, k and seed: resume it
            self._target(True)
            if not self.attrs or differs(self.attrs):
                self._drop_rebuild()
                self._target(False)
                return {"hook": self.hook, "skipped": True, "reason": "already indexed (use --force to redo)"}
        else:
            return {"hook": self.hook, "skipped": True, "reason": "already indexed (use --force to redo)"}
        self.set_attrs(run_uuid_indexing=run_uuid, k_indexing=k, seed_indexing=seed, window_indexing=window,
                       complete=False)
        return None

    def _drop_rebuild(self) -> None:
        folder = self.path / schema.index_rebuild_path(self.hook)
        if folder.exists():
            with _disk_errors(self.where):
                shutil.rmtree(folder)
                self._remove_empty_rebuild_group()

    def _remove_empty_rebuild_group(self) -> None:
        parent = self.path / schema.INDEX_GROUP / schema.REBUILD_GROUP
        if parent.is_dir() and not [p for p in parent.iterdir() if p.name != "zarr.json"]:
            shutil.rmtree(parent)

    def swap_in(self, wait: bool = True) -> Future | None:
        """Put the finished rebuild in the place of the index readers use, in one step, then remove the
        old one: a reader sees the old index or the new one, never a mix. ``wait=False``: the old
        one (thousands of files) is removed on a thread while the caller goes on; returns that
        thread's future, to be waited for while the hook's lock is still held."""
        from store.format import atomic

        live, new = self.path / schema.index_path(self.hook), self.path / self.rel
        old = None
        with _disk_errors(self.where):
            if live.exists():
                atomic.exchange(live, new)
                old = new
            else:
                os.rename(new, live)
                self._remove_empty_rebuild_group()
        self._target(False)
        if old is None:
            return None

        def remove_old() -> None:
            with _disk_errors(self.where):
                shutil.rmtree(old)
                self._remove_empty_rebuild_group()

        if wait:
            remove_old()
            return None
        pool = ThreadPoolExecutor(1, thread_name_prefix="neurobrowse-rmtree")
        try:
            return pool.submit(remove_old)
        finally:
            pool.shutdown(wait=False)

    def saved_stop(self, which: str) -> int:
        """The chunk the saved state of ``which`` ("p1" / "s1" / "p2") reaches (it covers 0..stop), 0 when none."""
        prog = (self.attrs.get("progress") or {}).get(which)
        return int(prog["chunk_stop"]) if prog else 0

    def write_index(self, arrays: dict[str, np.ndarray], attrs: dict, wait: bool = True,
                    saving: Future | None = None) -> Future | None:
        """Write the final index arrays (schema.INDEX_ARRAYS) and ``attrs``; ``complete`` last. A
        rebuild is then swapped in (``swap_in``: ``wait=False`` returns the future of the old index's
        removal). ``saving``: a save of the resume state still running on a thread (it writes this
        group's attributes too): when the group is marked incomplete already (``begin`` does), the
        arrays are written while it runs and only the attributes wait for it."""
        dims = {n: d for n, (_t, d) in schema.INDEX_ARRAYS.items()}
        if saving is not None and self.attrs.get("complete") is False:  # zarr.json is replaced whole: a safe read
            with _disk_errors(self.where):
                self.write_arrays(self.group, arrays, dims)
            saving.result()
        else:
            if saving is not None:
                saving.result()
            self.set_attrs(complete=False)
            with _disk_errors(self.where):
                self.write_arrays(self.group, arrays, dims)
        self.set_attrs(**attrs, complete=True)
        if self.rebuild:
            return self.swap_in(wait)
        return None

    def write_explanations(self, arrays: dict[str, np.ndarray], version: int) -> None:
        """Write the rule explanations (schema.EXPLAIN_ARRAYS, store.measures.explain) into the finished
        index readers use (index/{hook}), each array in one chunk with its checksum record; the attribute
        ``explained`` (``version``) is removed first and written last (store.index.explanations)."""
        where = f"the explanations of {self.hook} in {self.path}"
        with _disk_errors(where):
            grp = zarr.open_group(LocalStore(self.path), mode="r+", path=schema.index_path(self.hook))
            grp.attrs.pop("explained", None)
            unit = schema.unit_dim(self.hook)  # "feature" for a dictionary's features
            for name, (dtype, dims) in schema.EXPLAIN_ARRAYS.items():
                dims = tuple(unit if x == schema.NEURON_DIM else x for x in dims)
                a = np.ascontiguousarray(arrays[name], dtype=dtype)
                arr = grp.create_array(name, shape=a.shape, dtype=a.dtype, chunks=a.shape,
                                       compressors=schema.codecs(dtype), fill_value=0, dimension_names=dims,
                                       config=schema.ARRAY_CONFIG, overwrite=True)
                arr[...] = a
                seal.seal_array(self.path / schema.index_path(self.hook) / name, f"{self.hook}/{name}")
            grp.attrs["explained"] = version

    def clear(self) -> None:
        """Remove everything of this group (for --force or a stale index of another recording)."""
        with _disk_errors(self.where):
            if (self.path / self.rel).exists():
                shutil.rmtree(self.path / self.rel)
        self._target(self.rebuild)

    def write_arrays(self, group: zarr.Group, arrays: dict[str, np.ndarray], dims: dict[str, tuple],
                     neuron_chunk: int = schema.INDEX_NEURON_CHUNK, raw_floats: bool = False,
                     bind: str | None = None) -> None:
        """Create and fill arrays, chunked along their neuron axis. ``raw_floats``: float arrays get a
        Crc32c checksum only, no zstd (resume state: float64 sums barely compress, and zstd over
        the 2 x vocab x neurons per-token sums made each checkpoint cost seconds). Each array then gets
        its checksum record (store.format.seal) bound to the name ``{bind}/{array}`` (default: the hook)."""
        bind = self.hook if bind is None else bind
        todo: list = []
        owners: list = []  # the array each job in ``todo`` writes a chunk of
        folders: dict[str, Path] = {}
        unit = schema.unit_dim(self.hook)  # "feature" for a dictionary's features (their own size in xarray)
        for name, a in arrays.items():
            d = tuple(unit if x == schema.NEURON_DIM else x for x in dims[name])
            chunks = list(a.shape)
            if name not in schema.INDEX_WHOLE_ARRAYS and unit in d:
                ax = d.index(unit)
                chunks[ax] = min(neuron_chunk, a.shape[ax])
            chunks = tuple(max(1, c) for c in chunks)
            raw = raw_floats and a.dtype.kind == "f"
            arr = group.create_array(name, shape=a.shape, dtype=a.dtype, chunks=chunks,
                                     compressors=schema.dense_codecs() if raw else schema.codecs(str(a.dtype)),
                                     fill_value=0,
                                     dimension_names=d, config=schema.ARRAY_CONFIG, overwrite=True)
            folders[name] = Path(self.path) / arr.path
            jobs = _direct_chunk_jobs(Path(self.path), arr, np.asarray(a))
            if jobs is None:
                arr[...] = a
            else:
                todo += jobs
                owners += [name] * len(jobs)
        # the chunk files of every array at once, on a few threads (zstd releases the GIL)
        crcs: dict[str, list] = {}
        with ThreadPoolExecutor(max_workers=2) as pool:
            for name, f in zip(owners, [pool.submit(job) for job in todo]):
                crcs.setdefault(name, []).append(f.result())
        for name, folder in folders.items():
            seal.seal_array(folder, f"{bind}/{name}", crcs.get(name))

    def save_state(self, which: str, part, chunk_stop: int, extra: dict | None = None, quick: bool = False) -> None:
        """Save a partial result as the resume state of ``which`` (see ``save_states``)."""
        self.save_states({which: part}, chunk_stop, extra, quick)

    def save_states(self, parts: dict, chunk_stop: int, extra: dict | None = None, quick: bool | set = False) -> None:
        """Save partial results (``which`` -> part, e.g. "p1" / "s1" / "p2") covering chunks
        0..chunk_stop, each into the free slot of its ``which``, then point the progress attribute at
        them all in one write (the pointer is written last: a kill leaves the old saves valid).
        ``quick``: float arrays uncompressed (periodic checkpoints, soon replaced: ~2x cheaper to
        write), for every part or for the named ones; what the store keeps is saved compressed."""
        progress = dict(self.attrs.get("progress") or {})
        for which, part in parts.items():
            old = progress.get(which, {}).get("slot")
            slot = f"{which}_{1 - int(old[-1])}" if old else f"{which}_0"
            with _disk_errors(self.where):
                state = self.group.require_group(schema.INDEX_STATE_GROUP)
                if slot in state:
                    del state[slot]
                self._write_part(state.create_group(slot), which, part,
                                 raw=which in quick if isinstance(quick, set) else bool(quick))
            progress[which] = {"slot": slot, "chunk_stop": int(chunk_stop), **(extra or {})}
        self.set_attrs(progress=progress)
        if self.on_checkpoint is not None:
            for which in parts:
                self.on_checkpoint(self.hook, which, int(chunk_stop))

    def load_state(self, which: str):
        """(the saved partial result of ``which``, its progress entry), or (None, None) when there is none
        or it is damaged: a state is checked before it is used (store.index.state_check: its checksum
        records, its shapes against the store's manifest, its invariants) and a damaged one is discarded,
        with a warning, so that the caller computes it again from the data (never merged)."""
        from store.index.state_check import DamagedState

        prog = (self.attrs.get("progress") or {}).get(which)
        if not prog:
            return None, None
        try:
            return self._checked_state(which, prog), prog
        except DamagedState as e:
            self.discarded_states.append(which)
            print(f"warning: the saved resume state {which!r} of {self.where} is damaged ({e}); it is discarded "
                  "and computed again from the data", file=sys.stderr, flush=True)
            return None, None

    def _checked_state(self, which: str, prog):
        from store.index.source import vocab_from_manifest
        from store.index.state_check import DamagedState, check_state, read_checked_part

        if not isinstance(prog, dict) or not isinstance(prog.get("slot"), str) or not isinstance(
                prog.get("chunk_stop"), int) or prog["chunk_stop"] < 0:
            raise DamagedState(f"its progress entry {prog!r} is damaged")
        try:
            g = self.group[schema.INDEX_STATE_GROUP][prog["slot"]]
        except Exception as e:  # noqa: BLE001 - a missing or garbage slot
            raise DamagedState(f"its slot {prog['slot']!r} cannot be opened ({type(e).__name__}: {e})") from None
        part = read_checked_part(STATE_CLASSES[which], self.path, g, f"{self.hook}/state/{which}")
        m = schema.read_manifest(self.path) or {}
        try:
            sizes = dict(n_neurons=int(m["model_config"]["d_mlp"]), vocab=vocab_from_manifest(m, self.path),
                         n_tokens=int(m["n_tokens"]), chunk_tokens=int(m["chunk_tokens"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DamagedState(f"the store's manifest does not say its sizes ({e})") from None
        check_state(which, part, chunk_stop=prog["chunk_stop"], hook=self.hook, **sizes)
        return part

    def _write_part(self, g: zarr.Group, which: str, part, raw: bool) -> None:
        arrays = part.arrays()
        dims = {n: _state_dims(n, a, part.n_neurons) for n, a in arrays.items()}
        self.write_arrays(g, arrays, dims, neuron_chunk=256, raw_floats=raw, bind=f"{self.hook}/state/{which}")
        g.attrs.update(seal.seal_attrs({"ranges": [list(r) for r in part.ranges], **_scalars(part)}))

    def save_part(self, name: str, parts: dict) -> None:
        """Save partial results (``which`` -> part) as ``_state/{name}/{which}``: the result of one Dask
        task. Written under a temporary name, marked done and renamed into place, so ``name`` is
        always whole; a part saved already is kept (a rerun of a task saves the same result). Each
        task saves into a folder of its own and touches no attribute of this group, so tasks on
        several workers save at once (the ``_state`` group must exist: ``require_state_group``)."""
        import uuid

        state_dir = self.path / self.rel / schema.INDEX_STATE_GROUP
        if (state_dir / name).is_dir():
            return
        tmp = f"{name}.tmp-{uuid.uuid4().hex[:8]}"
        with _disk_errors(self.where):
            g = self.group[schema.INDEX_STATE_GROUP].create_group(tmp)
            for which, part in parts.items():
                self._write_part(g.create_group(which), which, part, raw=True)
            g.attrs.update({"done": True})
            try:
                os.rename(state_dir / tmp, state_dir / name)
            except OSError:  # saved meanwhile by another run of the same task
                shutil.rmtree(state_dir / tmp, ignore_errors=True)

    def require_state_group(self) -> None:
        with _disk_errors(self.where):
            self.group.require_group(schema.INDEX_STATE_GROUP)

    def part_names(self) -> set[str]:
        """Names of the parts saved whole by ``save_part``."""
        state = self.path / self.rel / schema.INDEX_STATE_GROUP
        if not state.is_dir():
            return set()
        g = self.group[schema.INDEX_STATE_GROUP]
        names = {n for n in g.group_keys() if ".tmp-" not in n and g[n].attrs.get("done")}
        for n in sorted(names):  # a damaged saved part is dropped (its task runs again), never merged
            why = self._part_damage(state / n)
            if why:
                print(f"warning: the saved part {n!r} of {self.where} is damaged ({why}); it is discarded and "
                      "computed again", file=sys.stderr, flush=True)
                with _disk_errors(self.where):
                    shutil.rmtree(state / n, ignore_errors=True)
                names.discard(n)
        return names

    def _part_damage(self, folder: Path) -> str | None:
        """Why the saved part in ``folder`` is damaged (its checksum records: cheap, no chunk decoded), or None."""
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                attrs = json.loads((sub / "zarr.json").read_text()).get("attributes") or {}
            except (OSError, ValueError, AttributeError) as e:
                return f"{sub.name}: unreadable attributes ({e})"
            if seal.attrs_ok(attrs) is False:
                return f"{sub.name}: its attributes do not match their checksum"
            for arr in sorted(p for p in sub.iterdir() if p.is_dir()):
                try:
                    seal.check_files(arr, json.loads((arr / "zarr.json").read_text()),
                                     f"{self.hook}/state/{sub.name}/{arr.name}")
                except (OSError, ValueError) as e:
                    return f"{sub.name}/{arr.name}: unreadable metadata ({e})"
                except seal.DamagedRecord as e:
                    return f"{sub.name}/{arr.name}: {e}"
        return None

    def load_part(self, name: str) -> dict:
        """The partial results ``save_part`` saved as ``name`` (``which`` -> part), checked
        (store.index.state_check); a damaged one is a StoreError saying to run the command again."""
        from store.index.state_check import DamagedState, read_checked_part

        g = self.group[schema.INDEX_STATE_GROUP][name]
        try:
            return {which: read_checked_part(STATE_CLASSES[which], self.path, g[which],
                                             f"{self.hook}/state/{which}") for which in g.group_keys()}
        except DamagedState as e:
            with _disk_errors(self.where):
                shutil.rmtree(self.path / self.rel / schema.INDEX_STATE_GROUP / name, ignore_errors=True)
            raise StoreError(f"the saved part {name!r} of {self.where} is damaged ({e}); it was removed: run the "
                             "same command again to compute it again") from None

    def prune_state(self) -> None:
        """After the final write: keep only the final pass-1 result (appending tokens to a store needs
        only a partial result of the new chunks merged into it); delete every other saved state."""
        if self.rebuild and not (self.path / self.rel).is_dir():  # swapped in by another IndexGroup
            self._target(False)
        progress = {w: v for w, v in (self.attrs.get("progress") or {}).items() if w == "p1"}
        self.set_attrs(progress=progress)
        keep = {v["slot"] for v in progress.values()}
        with _disk_errors(self.where):
            if schema.INDEX_STATE_GROUP in self.group:
                state = self.group[schema.INDEX_STATE_GROUP]
                for name in list(state.group_keys()):
                    if name not in keep:
                        del state[name]

    def drop_state(self) -> None:
        """Remove the resume state and its progress attribute."""
        self._reopen()  # the attributes as on disk (the final write may have come from another IndexGroup)
        with _disk_errors(self.where):
            if schema.INDEX_STATE_GROUP in self.group:
                del self.group[schema.INDEX_STATE_GROUP]
            attrs = self.attrs
            attrs.pop("progress", None)
            self.group.attrs.clear()
            self.group.attrs.update(attrs)


def _state_dims(name: str, a: np.ndarray, n_neurons: int) -> tuple:
    """Dimension names of a saved state array: the neuron axis is the first one of size n_neurons
    (or the last, for token_sum [2, V, N]), so the array is chunked along it."""
    d = [f"{name}_{i}" for i in range(a.ndim)]  # names of their own: the group opens in xarray
    if name != "token_count" and a.ndim:
        if a.shape[0] == n_neurons:
            d[0] = schema.NEURON_DIM
        elif a.shape[-1] == n_neurons:
            d[-1] = schema.NEURON_DIM
    return tuple(d)


def _scalars(part) -> dict:
    return {f.name: getattr(part, f.name) for f in dataclasses.fields(part)
            if isinstance(getattr(part, f.name), (int, str))}


__all__ = ["IndexGroup", "STATE_CLASSES"]
