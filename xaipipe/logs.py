"""Progress bars and log files for long-running steps."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], description: str, total: int | None = None, unit: str = "img") -> Iterator[T]:
    """Iterate with a progress bar on stderr (the job's log inside the workflow)."""
    return iter(tqdm(items, desc=description, total=total, unit=unit, file=sys.stderr, mininterval=2.0))


@contextlib.contextmanager
def logged(log_path: str | os.PathLike | None) -> Iterator[None]:
    """Send logging, stdout and stderr of the block to ``log_path`` (append); errors included.

    SIGTERM (what SLURM sends a job it cancels or that ran out of time, before SIGKILL)
    ends the block with SystemExit, so that files being written are removed as on any
    other error instead of being left behind half-written.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines are noise in a job log
    with _sigterm_as_exit():
        if not log_path:
            yield
            return
        with _logged_to(log_path):
            yield


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _logged_to(log_path: str | os.PathLike) -> Iterator[None]:
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "a", buffering=1) as log, _fd_redirect(log), contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except BaseException:
            logging.exception("step failed")
            raise
        finally:
            root.removeHandler(handler)


@contextlib.contextmanager
def _fd_redirect(log) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``log`` too, for what native libraries (TensorFlow) print."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
