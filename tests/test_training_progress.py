"""The progress line that reaches users through Docker (no TTY) and the bar on a terminal."""
import io

from pose_train.training.progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_without_a_terminal_plain_lines_with_etas(monkeypatch):
    monkeypatch.setenv("POSE_TRAIN_PROGRESS_EVERY", "0")
    out = io.StringIO()
    p = Progress("epoch 3", total=4, initial=1, steps_after=8, stream=out)
    for _ in range(3):
        p.update(0.5, 8)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert lines[0].startswith("epoch 3: step 2/4, loss 0.50000, ")
    assert "img/s, epoch ETA " in lines[0] and ", run ETA " in lines[0]
    assert lines[-1].startswith("epoch 3: step 4/4")


def test_lines_are_spaced_by_the_interval_and_the_first_step_always_shows(monkeypatch):
    monkeypatch.setenv("POSE_TRAIN_PROGRESS_EVERY", "3600")
    out = io.StringIO()
    p = Progress("epoch 1", total=50, stream=out)
    for _ in range(50):
        p.update(0.1, 2)
    assert len(out.getvalue().splitlines()) == 1


def test_a_terminal_gets_the_bar_not_lines():
    out = _Tty()
    p = Progress("epoch 1", total=5, stream=out)
    for _ in range(5):
        p.update(0.1, 2)
    p.close()
    assert "\r" in out.getvalue() and "run ETA" not in out.getvalue()


def test_a_slow_step_is_announced_while_it_runs(monkeypatch):
    """A CPU step at full size takes minutes: the line must come on time, not when the step ends."""
    import time
    monkeypatch.setenv("POSE_TRAIN_PROGRESS_EVERY", "0.2")
    out = io.StringIO()
    p = Progress("epoch 1", total=5, stream=out)
    time.sleep(0.7)                   # the first step, still running
    p.close()
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("epoch 1: step 1/5 running for 0m00s") for line in lines)
    out.truncate(0)
    time.sleep(0.5)
    assert out.getvalue() == ""        # closed: silent
