"""Connecting to Dask: ``--scheduler local:N | tcp://HOST:PORT | FILE.json`` -> a ``distributed.Client``.

Dask is an optional extra (``pip install neurobrowse[distributed]``), imported only here and in the
modules that run work on it, so the single-process paths never need it. Every way of failing to get
a cluster (Dask missing, a malformed spec, a scheduler that does not answer, a scheduler file that
is not there) becomes a ``SchedulerError`` within ``connect_timeout_s`` seconds, never a hang.

* ``local:N`` starts a ``LocalCluster`` of N single-threaded worker *processes* (our kernels and
  torch hold the GIL in places; processes also make a killed worker a real, recoverable event).
  With ``gpus=True`` (recording) and ``dask_cuda`` installed and GPUs present, a
  ``LocalCUDACluster`` with one worker per GPU instead (N caps the number of GPUs used).
* ``tcp://HOST:PORT`` (or ``tls://``, ``ucx://``...) connects to a running scheduler.
* ``FILE.json`` reads a scheduler file written by ``dask scheduler --scheduler-file FILE.json``.

Workers must see the store at the same path as the client (a shared file system for a real
cluster); the work functions receive paths, never open handles.
"""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from store.errors import NeurobrowseError

INSTALL_HINT = "pip install neurobrowse[distributed]"


class SchedulerError(NeurobrowseError):
    """A --scheduler that cannot be used: Dask missing, a malformed spec, or no scheduler answering."""


@dataclass
class ClusterConfig:
    connect_timeout_s: float = 10.0  # give up on a scheduler that does not answer after this long
    gpus: bool = False  # recording: one worker per GPU (dask_cuda) when GPUs are present
    memory_limit: str | None = "auto"  # per local worker; "auto" = the machine's memory / N
    dashboard: bool = False  # local clusters: serve the Bokeh dashboard (needs bokeh) on a free port
    # local clusters: threads each worker process gives torch / BLAS / Numba; None = cores // N, so
    # local:1 runs as fast as one process and local:N does not oversubscribe the cores (Dask's own
    # default is 1, which halves torch on a 2-core box)
    inner_threads: int | None = None


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed --scheduler value: kind is "local", "address" or "file"."""

    kind: str
    n_workers: int = 0  # local
    address: str = ""  # address
    file: str = ""  # file

    def describe(self) -> str:
        if self.kind == "local":
            return f"a local cluster of {self.n_workers} worker process{'es' if self.n_workers != 1 else ''}"
        if self.kind == "address":
            return f"the scheduler at {self.address}"
        return f"the scheduler named in {self.file}"


_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc|ws|wss)://[^\s/]+$")


def parse_scheduler(spec: str) -> SchedulerSpec:
    """'local:4' / 'tcp://10.0.0.5:8786' / 'cluster.json' -> SchedulerSpec; SchedulerError otherwise."""
    text = (spec or "").strip()
    if text.startswith("local"):
        m = re.fullmatch(r"local(?::(\d+))?", text)
        if not m:
            raise SchedulerError(f"--scheduler {spec!r}: expected local:N with N a number of workers, e.g. local:2")
        n = int(m.group(1)) if m.group(1) else (os.cpu_count() or 1)
        if n < 1:
            raise SchedulerError(f"--scheduler {spec!r}: a local cluster needs at least 1 worker")
        return SchedulerSpec("local", n_workers=n)
    if "://" in text:
        if not _ADDRESS.match(text):
            raise SchedulerError(f"--scheduler {spec!r} is not a scheduler address like tcp://HOST:PORT")
        return SchedulerSpec("address", address=text)
    if text.endswith(".json") or Path(text).is_file():
        return SchedulerSpec("file", file=text)
    raise SchedulerError(f"--scheduler {spec!r}: expected local:N, tcp://HOST:PORT or a scheduler FILE.json")


def _import_distributed():
    try:
        import distributed
    except ImportError as e:
        raise SchedulerError(f"--scheduler needs Dask, which is not installed ({e}); install it with "
                             f"`{INSTALL_HINT}`, or leave out --scheduler to run in this process") from e
    return distributed


def _address_from_file(path: str) -> str:
    """The scheduler address in a scheduler file (Client(scheduler_file=...) waits forever for a
    missing file; reading it here fails at once with a clear message)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SchedulerError(f"scheduler file {p} does not exist; start a scheduler with "
                             f"`dask scheduler --scheduler-file {p}` or pass its tcp://HOST:PORT address")
    try:
        address = json.loads(p.read_text())["address"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SchedulerError(f"scheduler file {p} is not a Dask scheduler file (no \"address\": {e}); "
                             f"pass the file written by `dask scheduler --scheduler-file`") from e
    return str(address)


def _probe(address: str, timeout_s: float) -> None:
    """Fail at once when a tcp:// address does not resolve or nothing listens there (distributed
    itself retries until its timeout, ~10 s, before saying so)."""
    import socket
    from urllib.parse import urlsplit

    if not address.startswith(("tcp://", "tls://")):
        return
    u = urlsplit(address)
    try:
        host, port = u.hostname, u.port
    except ValueError as e:
        raise SchedulerError(f"--scheduler {address!r}: the port is not a number ({e})") from e
    if not host or port is None:
        raise SchedulerError(f"--scheduler {address!r}: expected tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786")
    try:
        with socket.create_connection((host, port), timeout=min(timeout_s, 5.0)) as sock:
            if address.startswith("tcp://"):
                _handshake(sock, address, min(timeout_s, HANDSHAKE_S))
    except SchedulerError:
        raise
    except socket.gaierror as e:
        raise SchedulerError(f"--scheduler {address}: the host {host!r} is unknown ({e.strerror}); check the "
                             f"address of the Dask scheduler") from e
    except OSError as e:
        raise SchedulerError(f"no Dask scheduler at {address} ({e.strerror or e}); start one with `dask scheduler` "
                             f"(it prints its tcp:// address), or use --scheduler local:N") from e


HANDSHAKE_S = 3.0  # a Dask scheduler writes its handshake at once on a new connection


def _handshake(sock, address: str, timeout_s: float) -> None:
    """Check that what listens at ``address`` speaks Dask's protocol: a scheduler writes its handshake as
    soon as a connection is accepted, a message of a few frames whose count is the first 8 bytes (little
    endian). An HTTP server writes nothing (it waits for a request), an SSH server a text banner: either is
    a SchedulerError naming the address, never a client that waits or allocates what the bytes seem to say."""
    import socket
    import struct

    sock.settimeout(timeout_s)
    head = b""
    try:
        while len(head) < 8:
            got = sock.recv(8 - len(head))
            if not got:
                break
            head += got
    except (socket.timeout, OSError):
        pass
    n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
    if n is None or not 1 <= n <= 1024:
        what = ("sent nothing within {:g} s".format(timeout_s) if not head
                else f"sent {head[:8]!r}, not a Dask handshake")
        raise SchedulerError(f"something answers at {address}, but it is not a Dask scheduler (it {what}); check the "
                             "address (a scheduler prints its tcp:// address when it starts), or use "
                             "--scheduler local:N")


def max_local_workers() -> tuple[int, str]:
    """The most local worker processes this machine holds: 4 per core, and about 1 GiB of the memory
    available now per worker (each imports torch / numba and holds chunks); with why."""
    from store.index.run import available_memory_bytes

    cores = os.cpu_count() or 1
    avail = available_memory_bytes()
    by_mem = max(1, int(avail // (1 << 30))) if avail else 4 * cores
    return max(1, min(4 * cores, by_mem)), (f"{cores} cores" + (f" and {avail / 1e9:.0f} GB available" if avail
                                                                else ""))


def _n_gpus() -> int:
    """GPUs visible to dask_cuda (0 when it or NVML is missing)."""
    try:
        from dask_cuda.utils import get_n_gpus

        return int(get_n_gpus())
    except Exception:
        return 0


def _local_cluster(spec: SchedulerSpec, cfg: ClusterConfig):
    from distributed import LocalCluster

    common = dict(dashboard_address=":0" if cfg.dashboard else None)
    if cfg.gpus:
        n_gpus = _n_gpus()
        if n_gpus:
            from dask_cuda import LocalCUDACluster

            use = min(spec.n_workers, n_gpus)
            return LocalCUDACluster(CUDA_VISIBLE_DEVICES=",".join(str(i) for i in range(use)),
                                    threads_per_worker=1, memory_limit=cfg.memory_limit, **common)
    import dask

    # Dask sets MALLOC_TRIM_THRESHOLD_ in its workers' environment, which fixes glibc's mmap threshold:
    # every large buffer (a chunk, a batch of activations) is then a fresh mmap with page faults on
    # each task; measured on the dev box, local:1 recording ran up to 2x slower than one process with
    # it and on par without. Unset for the clusters we start (a process-wide Dask setting).
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    t = str(cfg.inner_threads or max(1, (os.cpu_count() or 1) // spec.n_workers))
    env = {name: t for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
    return LocalCluster(n_workers=spec.n_workers, threads_per_worker=1, processes=True,
                        memory_limit=cfg.memory_limit, env=env, **common)


@contextmanager
def dask_client(spec: str, config: ClusterConfig | None = None):
    """Yield a connected ``distributed.Client`` for a --scheduler value; close it (and a local
    cluster it started) on exit. Raises SchedulerError within ``connect_timeout_s`` when there is
    no scheduler to talk to."""
    cfg = config or ClusterConfig()
    parsed = parse_scheduler(spec)
    address = ""
    if parsed.kind != "local":
        address = parsed.address if parsed.kind == "address" else _address_from_file(parsed.file)
        _probe(address, cfg.connect_timeout_s)  # before the (slow) import of distributed
    else:
        cap, why = max_local_workers()
        if parsed.n_workers > cap:
            print(f"note: --scheduler local:{parsed.n_workers} is more workers than this machine holds ({why}); "
                  f"starting {cap}", file=sys.stderr, flush=True)
            parsed = SchedulerSpec("local", n_workers=cap)
    distributed = _import_distributed()
    cluster = None
    try:
        if parsed.kind == "local":
            try:
                cluster = _local_cluster(parsed, cfg)
            except Exception as e:
                raise SchedulerError(f"could not start {parsed.describe()} ({type(e).__name__}: {e})") from e
            client = distributed.Client(cluster, timeout=cfg.connect_timeout_s)
        else:
            try:
                client = distributed.Client(address, timeout=cfg.connect_timeout_s)
            except (OSError, TimeoutError, ValueError) as e:
                raise SchedulerError(
                    f"no Dask scheduler answered at {address} within {cfg.connect_timeout_s:g} s ({e}); check "
                    f"the address and that `dask scheduler` is running, or use --scheduler local:N") from e
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def n_workers(client, wait_s: float = 30.0) -> int:
    """Workers connected to the scheduler, waiting (up to ``wait_s``) for at least one."""
    info = client.scheduler_info()
    n = len(info.get("workers", {}))
    if n == 0:
        try:
            client.wait_for_workers(1, timeout=wait_s)
        except (TimeoutError, OSError) as e:
            raise SchedulerError(f"the Dask scheduler {client.scheduler.address} has no workers after "
                                 f"{wait_s:g} s; start some with `dask worker {client.scheduler.address}`") from e
        n = len(client.scheduler_info().get("workers", {}))
    return n


@contextmanager
def dask_errors(what: str):
    """Turn a lost scheduler or a task that kept killing its workers into a SchedulerError that
    says how to go on (the work already on disk is kept: the same command resumes)."""
    from concurrent.futures import CancelledError

    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    try:
        yield
    except KilledWorker as e:
        raise SchedulerError(f"{what}: a task killed {e.args[0] if e.args else 'its'} worker(s) too often "
                             f"({e}); a worker may run out of memory - give workers more memory or fewer "
                             f"chunks per task, then run the same command again to resume") from e
    except (CancelledError, CommClosedError) as e:
        raise SchedulerError(f"{what}: lost the Dask scheduler ({type(e).__name__}: {e}); what was written "
                             f"is kept - run the same command again to resume") from e


def progress_bar(futures, *, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "task",
                 enabled: bool = True, weights: dict | None = None):
    """Iterate ``futures`` as they complete under a progress bar (store.progress; our own bar: it works for any client,
    in a terminal or a log, unlike distributed's widget). ``weights`` maps a future's key to the
    bar units it counts for (e.g. tokens); default 1 each. Yields the finished futures."""
    from distributed import as_completed

    bar = None
    if enabled:
        from store.progress import progress_bar as bar_for

        tot = total if total is not None else (sum(weights.values()) if weights else len(futures))
        bar = bar_for(total=tot, initial=initial, desc=desc, unit=unit, unit_scale=True)
    try:
        for fut in as_completed(futures):
            if bar is not None:
                bar.update((weights or {}).get(fut.key, 1))
            yield fut
    finally:
        if bar is not None:
            bar.close()


__all__ = ["ClusterConfig", "SchedulerError", "SchedulerSpec", "parse_scheduler", "dask_client", "n_workers",
           "progress_bar", "dask_errors", "INSTALL_HINT"]


def local_or_dask(scheduler: str | None, local, on_dask, config: ClusterConfig | None = None):
    """The one place the local-or-Dask choice is made: ``local()`` in this process without a scheduler,
    else ``on_dask(client)`` on a client for ``scheduler`` (closed afterwards)."""
    if not scheduler:
        return local()
    with dask_client(scheduler, config) as client:
        return on_dask(client)
