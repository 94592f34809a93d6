"""Helper processes of a crawl: how they are started and how frames cross their sockets.

A crawl hands work that would hold its thread (reading pages: crawler.extract_pool; writing
to the database: crawler.store_process) to processes of its own. Each is `python -m MODULE
FD`, started with one end of a socket pair and nothing else: never a fork of a process that
runs a reactor and threads. It belongs to the crawl's process group, so the daemon's time
limit kills it with the crawl, and it reads the end of its socket and exits when its crawl
is gone. On the socket, a message is a frame: its length (4 bytes, network order), then
its payload.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import BinaryIO

from crawler.gc_tuning import tune_gc

HEADER = struct.Struct("!I")
# A helper runs this much nicer than its crawl. The crawl's event loop paces everything
# (downloads, scheduling, storing) and works in short bursts; a helper's work can wait a
# moment. When they contend for a core (two cores shared with the monitor), the loop wins and
# the helper works in its gaps: on the throughput benchmark a 10,000-post run took 30.1 s
# instead of 33.3 s with the extraction worker at this priority (medians of 8 runs each,
# alternated).
WORKER_NICE = 5


def several_cores() -> bool:
    """Return True when this process may use more than one core: helpers then run beside the
    crawl instead of taking turns with it (the default of EXTRACT_WORKERS and STORE_PROCESS)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return cores > 1


def spawn(module: str) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start `python -m module FD` with one end of a new socket pair; return it and our end."""
    ours, theirs = socket.socketpair()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


def settle_in(warm_up: Callable[[], None] | None = None) -> None:
    """Set up a helper process as it starts: Ctrl-C is left to its crawl, it runs
    `WORKER_NICE` nicer, `warm_up` imports and builds what its work needs, and then (start-up's
    objects being no garbage) its garbage collector is tuned as the crawl's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(WORKER_NICE)
    except OSError:  # pragma: no cover - lowering one's own priority is never refused on Linux
        pass
    if warm_up is not None:
        warm_up()
    tune_gc()  # a helper allocates as busily as its crawl


def frame(payload: bytes) -> bytes:
    """Return `payload` framed by its length."""
    return HEADER.pack(len(payload)) + payload


def read_frame(incoming: BinaryIO) -> bytes | None:
    """Return the payload of the next frame on a blocking stream, or None at its end (the
    other side closed its end, or is gone)."""
    header = incoming.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = incoming.read(size)
    return payload if len(payload) == size else None
