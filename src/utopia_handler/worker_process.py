"""`serve`'s worker as a child process, so work never competes with acknowledgements.

One Python process runs one thread at a time: a worker busy with a backlog (rendering, parsing
replies, its SQL) would make every callback wait its turn. So `serve` runs the worker in a child
of its own, in the same process group, and:

- starts it after the web side, restarts it when it dies, stops it (SIGTERM, then waits for it to
  finish or give back what it holds) when `serve` stops;
- wakes it at once when a callback or the console stores new work: a byte on a pipe the child
  inherited (the worker still polls as a fallback);
- takes it along when `serve` itself is killed: on Linux the child asks the kernel for SIGKILL
  when its parent dies, so a killed `serve` leaves no worker behind that still holds leases, and
  the next one's worker takes the dead one's work over at once (process_identity.is_gone).
  Elsewhere the child stops when the pipe closes.

The child gets the parent's settings as they were loaded, over its standard input.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from utopia_handler.logs import log_event, setup_logging
from utopia_handler.settings import Settings

log = logging.getLogger("utopia_handler.worker_process")

# A child that dies within this long of its start is restarted only after a growing pause.
_QUICK_DEATH_SECONDS = 10.0
_MAX_RESTART_PAUSE = 30.0
_PR_SET_PDEATHSIG = 1


class PipeWakeup(threading.Event):
    """Stands for the worker's wake-up event in `serve`'s web side: set() pokes the child."""

    def __init__(self, write_fd: int) -> None:
        super().__init__()
        self._fd = write_fd

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            # Full: the worker has wake-ups waiting already; one more says nothing new.
            os.write(self._fd, b"\x01")


class WorkerChild:
    """The worker in a child process: started, watched and restarted by `serve`'s main thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # One pipe for the whole life of `serve`: a restarted child reads where the last left off.
        self._read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self.wakeup = PipeWakeup(write_fd)
        self._write_fd = write_fd
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._started_at = 0.0
        self._pause = 1.0
        self._next_start = 0.0

    def start(self) -> None:
        """Start the child (call from the thread that lives as long as `serve`: the main one)."""
        # Our own interpreter and module, with numbers we made: nothing comes from input.
        self.process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "utopia_handler.worker_process",
                str(self._read_fd),
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            pass_fds=(self._read_fd,),
        )
        assert self.process.stdin is not None
        with self.process.stdin:
            pickle.dump(self.settings, self.process.stdin)
        self._started_at = time.monotonic()
        log_event(log, "worker.child_started", pid=self.process.pid)

    def watch(self) -> None:
        """Restart the child if it has died (called now and then by the main loop)."""
        if self.process is None or self.process.poll() is None:
            return
        now = time.monotonic()
        if self._next_start == 0.0:
            log_event(
                log,
                "worker.child_exited",
                logging.ERROR,
                pid=self.process.pid,
                code=self.process.returncode,
            )
            quick = now - self._started_at < _QUICK_DEATH_SECONDS
            self._pause = min(self._pause * 2, _MAX_RESTART_PAUSE) if quick else 1.0
            # A child that keeps dying at start (a broken database, say) is not restarted in a loop.
            self._next_start = now + (self._pause if quick else 0.0)
        if now >= self._next_start:
            self._next_start = 0.0
            self.restarts += 1
            self.start()

    def stop(self, timeout: float = 90.0) -> None:
        """SIGTERM the child and wait for it to finish or give back what it holds."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log_event(log, "worker.child_killed", logging.ERROR, pid=process.pid)
                process.kill()
                process.wait()
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the parent dies (Linux); the pipe's end covers the rest."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _relay_wakeups(fd: int, wakeup: threading.Event, stop: threading.Event) -> None:
    """Turn bytes on the pipe into wake-ups; its end (the parent is gone) stops the worker."""
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            stop.set()
            return
        wakeup.set()


def main(argv: list[str]) -> None:
    """The child: read the settings, then run the worker until SIGTERM, SIGINT or the parent's end."""
    read_fd, parent = int(argv[0]), int(argv[1])
    _die_with_parent(parent)
    # Written by our own parent just now, over a pipe only it holds.
    settings: Settings = pickle.load(sys.stdin.buffer)  # noqa: S301
    from utopia_handler.runtime import build_runtime
    from utopia_handler.worker import Worker

    # serve's own process rotates the file; the child only appends and follows it.
    setup_logging(settings.log_file, settings.log_level, rotate=False)
    runtime = build_runtime(settings)
    stop = threading.Event()
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log_event(log, "worker.child_stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    worker = Worker(runtime, wakeup=runtime.wakeup)
    threading.Thread(
        target=_relay_wakeups, args=(read_fd, runtime.wakeup, stop), name="wake", daemon=True
    ).start()
    worker.start()
    while not stop.wait(0.5):
        pass
    worker.stop()
    runtime.close()


if __name__ == "__main__":
    main(sys.argv[1:])
