"""Stopping a run cleanly: SIGTERM/SIGINT and a wall-clock limit, both checked at step boundaries.

Trainers never save from inside a signal handler (the model may be mid-update); the handler
only records the request and the loop saves at the next step boundary.
"""
import contextlib
import shlex
import signal
import sys
import threading
import time


@contextlib.contextmanager
def handled(signals, handler):
    """``handler`` for ``signals`` meanwhile, the previous ones restored after. Only in the
    main thread (Python's rule); a signal ignored now (nohup's SIGHUP) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals
                if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class GracefulStop:
    """Context manager: the first SIGTERM/SIGINT/SIGHUP sets ``requested``; a second SIGINT
    aborts. A closed terminal (SIGHUP) saves as a scheduler's SIGTERM does.

    Handlers are only installed in the main thread (Python's rule) and restored on exit.
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
        self.signals = tuple(signals)
        self.requested = False
        self.reason = None
        self._previous = {}

    def request(self, reason):
        """Ask the loop to stop at the next step boundary (also used for the time limit)."""
        self.requested = True
        self.reason = self.reason or reason

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            # A second Ctrl-C means "now": the user does not want to wait for the save.
            raise KeyboardInterrupt
        self.request(signal.Signals(signum).name)
        print("\npose-train: %s received; saving at the next step boundary (Ctrl-C again to "
              "abort without saving)" % signal.Signals(signum).name, file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                    continue    # nohup: the user asked to outlive the terminal
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


class TimeLimit:
    """Wall-clock budget in hours. ``expired()`` turns true early enough to save one checkpoint.

    The margin defaults to 2 minutes plus three times the slowest step seen so far, because the
    check happens between steps and a save must still fit before the platform kills the job.
    """

    def __init__(self, hours, margin_s=None, clock=time.monotonic):
        self.clock = clock
        self.start = clock()
        self.limit_s = None if hours is None else float(hours) * 3600.0
        self.margin_s = margin_s
        self._last = self.start
        self._slowest_step = 0.0

    def tick(self):
        """Call once per step: keeps the slowest step time for the safety margin."""
        now = self.clock()
        self._slowest_step = max(self._slowest_step, now - self._last)
        self._last = now

    def remaining(self):
        """Seconds left before the limit (inf when there is no limit)."""
        if self.limit_s is None:
            return float("inf")
        return self.limit_s - (self.clock() - self.start)

    def expired(self):
        if self.limit_s is None:
            return False
        margin = self.margin_s if self.margin_s is not None else 120.0 + 3.0 * self._slowest_step
        return self.remaining() <= margin


def continue_command(argv, drop=("--resume", "--net"), add=("--resume", "auto")):
    """Rebuild the command line with ``--resume auto`` instead of any --resume/--net given."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        key = arg.split("=", 1)[0]
        if key in drop:
            skip = "=" not in arg
            continue
        out.append(arg)
    return " ".join(shlex.quote(a) for a in list(out) + list(add))
