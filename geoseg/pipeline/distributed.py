"""Dask clients for batches: a local cluster started in-process, or a running cluster.

``geoseg run`` processes the scenes of a batch as Dask tasks (see
:func:`geoseg.pipeline.batch.run_batch`). :func:`dask_client` gives the client:

- with an address (``--scheduler tcp://HOST:PORT`` or the ``GEOSEG_SCHEDULER`` variable) it
  connects to a running scheduler, waits for at least one worker, and on exit only
  disconnects: the cluster is never closed;
- otherwise it starts a :class:`distributed.LocalCluster` of worker **processes** with one
  thread each (the steps are numpy/GDAL code that holds the GIL in places, and a scene's
  memory is then bounded per process), ``workers`` of them (default: the usable cores),
  each with a memory limit of the machine's memory (or its cgroup limit) divided by the
  number of workers. The cluster is closed on exit.

Ctrl-C (SIGINT) is for the process that drives the batch: the local cluster's processes are
started with SIGINT blocked, so a Ctrl-C in the terminal (sent to the whole process group)
reaches only the driver, which stops the batch and closes the cluster. A Ctrl-C while the
cluster starts is held until it has started (then raised), and one while it closes is
dropped (it is closing anyway): a cluster half started or half closed by a
``KeyboardInterrupt`` prints worker tracebacks and assertion errors.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from geoseg.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["SCHEDULER_ENV", "dask_client", "default_workers", "finished", "local_memory_limit"]

log = logging.getLogger("geoseg.batch")

#: Environment variable naming a running scheduler (same as ``--scheduler``).
SCHEDULER_ENV = "GEOSEG_SCHEDULER"

#: Seconds to wait for the scheduler to answer and for a first worker to join.
CONNECT_TIMEOUT_S = 30.0

#: How often a scene is retried on another worker after its worker died (out of memory,
#: crash) before it is reported failed; Dask's own default is 3.
ALLOWED_FAILURES = 1


@contextmanager
def _sigint_held(*, deliver: bool) -> Iterator[None]:
    """Keep Ctrl-C (SIGINT) away from a local cluster while it starts or closes.

    SIGINT is blocked in this thread, so the threads started meanwhile (Dask's event loop)
    and the worker processes they spawn inherit it blocked and never see a Ctrl-C. A Ctrl-C
    that arrives meanwhile is recorded, then raised when the block ends (``deliver``) or
    dropped. Does nothing outside the main thread, without POSIX signal masks, or when SIGINT
    is ignored (a background job).
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask") or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # starting it later would unblock SIGINT in the thread that starts it
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending Ctrl-C is recorded here
        signal.signal(signal.SIGINT, previous)
    if caught and deliver:
        signal.raise_signal(signal.SIGINT)


#: Longest sleep between two looks at running futures (:func:`finished`), in seconds.
POLL_S = 0.05


def finished(futures: Collection[Future]) -> list[Future]:
    """Wait until at least one of ``futures`` is done; the done ones, in ``futures``' order.

    Polls with a plain sleep instead of blocking in Dask's condition variable
    (``distributed.as_completed``): a Ctrl-C then lands in the sleep as a clean
    ``KeyboardInterrupt``. One landing between a lock's release and the end of its ``with``
    block surfaces as ``RuntimeError: cannot release un-acquired lock`` instead. Each sleep is
    a twentieth of the time waited so far (1 ms to :data:`POLL_S`), so a completion is seen
    within about 5 % of the wait and a short scene or tile is not held up by the polling.

    Examples
    --------
    >>> from distributed import Client
    >>> with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
    ...     futures, results = [client.submit(pow, 2, n) for n in (3, 4)], []
    ...     while futures:
    ...         done = finished(futures)
    ...         results += [f.result() for f in done]
    ...         futures = [f for f in futures if f not in done]
    >>> sorted(results)
    [8, 16]
    """
    start = time.perf_counter()
    while True:
        done = [future for future in futures if future.done()]
        if done or not futures:
            return done
        time.sleep(min(POLL_S, max(0.001, (time.perf_counter() - start) / 20)))


def default_workers() -> int:
    """Number of local workers by default: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def local_memory_limit(workers: int) -> int:
    """Bytes of memory each of ``workers`` local workers may use.

    The machine's memory (or the cgroup limit, whichever is lower, as measured by Dask)
    divided by the number of workers. A worker above 95 % of it is restarted by its nanny
    and the scene it was running is reported failed.

    Parameters
    ----------
    workers : int
        Number of local workers; values below 1 count as 1.

    Returns
    -------
    int
        Bytes per worker.
    """
    from distributed.system import MEMORY_LIMIT

    return int(MEMORY_LIMIT // max(1, workers))


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A ``dask.distributed.Client`` for a batch, closed (with its local cluster) on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://HOST:PORT``). The cluster is left running.
    workers : int, optional
        Number of worker processes of the local cluster (default: :func:`default_workers`).
        Ignored with ``scheduler``.

    Yields
    ------
    distributed.Client
        A client of the scheduler at ``scheduler``, or of a local cluster of ``workers``
        processes of one thread each.

    Raises
    ------
    ConfigError
        ``workers`` is below 1, the scheduler cannot be reached, or no worker joins it
        within ``CONNECT_TIMEOUT_S`` seconds.

    Examples
    --------
    >>> from geoseg.pipeline.batch import run_batch
    >>> with dask_client(workers=2) as client:                          # doctest: +SKIP
    ...     reports = run_batch(pipe, ["a.tif", "b.tif"], "out/", client=client)
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            remote = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler there ({exc})") from None
        try:
            try:
                remote.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
            except TimeoutError:
                raise ConfigError(f"--scheduler {scheduler}: no Dask worker joined the scheduler within {CONNECT_TIMEOUT_S:.0f} s") from None
            log.info("using the Dask cluster at %s (%d worker thread(s))", scheduler, sum(remote.nthreads().values()))
            yield remote
        finally:
            remote.close()
        return
    n = default_workers() if workers is None else workers
    if n < 1:
        raise ConfigError(f"--workers {n}: need at least 1 worker")
    cluster = client = None
    try:
        with _sigint_held(deliver=True), dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                memory_limit=local_memory_limit(n),
                dashboard_address=None,  # no dashboard; its HTTP server on a free port, not 8787:
                scheduler_kwargs={"dashboard_address": ":0"},
                silence_logs=logging.CRITICAL,
            )
            client = Client(cluster)
        log.debug("local Dask cluster: %d worker(s), %.1f GiB each", n, local_memory_limit(n) / 2**30)
        yield client
    finally:
        with _sigint_held(deliver=False):
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
