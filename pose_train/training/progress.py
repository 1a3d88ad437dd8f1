"""Progress of a training epoch that reaches the user through Docker too.

On a terminal: tqdm's live bar. Without one (a container started without -t, compose, a log
file, CI) tqdm's carriage-return updates sit in a buffer for tens of seconds, so a plain line
is printed every ``every`` seconds instead: step/total, loss, img/s, and the ETA of the epoch
and of the run. POSE_TRAIN_PROGRESS_EVERY sets the interval (default 30 s; 0 = every step).
"""
import os
import sys
import threading
import time

from tqdm import tqdm

from pose_train import environment

EVERY_ENV, EVERY_S = environment.PROGRESS_EVERY, 30.0


def _clock(seconds):
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    return "%dh%02dm" % (h, rest // 60) if h else "%dm%02ds" % divmod(rest, 60)


class Progress:
    """``update(loss, samples)`` once per step; ``close()`` at the end of the epoch.

    loss may be a device tensor: it is read (a host-device sync) only when shown, about once
    a second on a terminal and once per line otherwise. steps_after: steps of the epochs still
    to come after this one (for the run's ETA).
    """

    def __init__(self, desc, total, initial=0, steps_after=0, enabled=True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.desc, self.total, self.step, self.steps_after = desc, total, initial, steps_after
        self.start, self.first = time.time(), initial
        self.samples, self.last_line = 0, self.start
        self.every = float(os.environ.get(EVERY_ENV, EVERY_S))
        self.bar = tqdm(desc=desc, total=total, initial=initial, unit="step", file=self.stream,
                        disable=not self.tty)
        # A slow step (minutes on a CPU at full size) must not look like a hang: a heartbeat
        # says how long the running step has taken, on time rather than at step boundaries.
        self.step_started, self._closed = self.start, threading.Event()
        if enabled:
            threading.Thread(target=self._heartbeat, daemon=True).start()

    def _heartbeat(self):
        period = self.every if self.every > 0 else EVERY_S
        while not self._closed.wait(period):
            waited = time.time() - self.step_started
            if waited < period:
                continue
            if self.tty:
                self.bar.set_postfix_str("step %d running for %s" % (self.step + 1, _clock(waited)))
            else:
                print("%s: step %d/%d running for %s" % (self.desc, self.step + 1, self.total, _clock(waited)),
                      file=self.stream, flush=True)

    def update(self, loss, samples):
        self.step += 1
        self.samples += samples
        now = time.time()
        self.step_started = now
        if self.tty:
            self.bar.update(1)
            if now - self.last_line >= 1.0:
                self.last_line = now
                self.bar.set_postfix(loss="%.5f" % float(loss))
            return
        if self.enabled and (now - self.last_line >= self.every or self.step == self.first + 1):
            self.last_line = now
            print(self.line(float(loss), now), file=self.stream, flush=True)

    def line(self, loss, now):
        elapsed = max(now - self.start, 1e-9)
        per_step = elapsed / max(self.step - self.first, 1)
        left = self.total - self.step
        return ("%s: step %d/%d, loss %.5f, %.1f img/s, epoch ETA %s, run ETA %s"
                % (self.desc, self.step, self.total, loss, self.samples / elapsed,
                   _clock(left * per_step), _clock((left + self.steps_after) * per_step)))

    def close(self):
        self._closed.set()
        self.bar.close()
