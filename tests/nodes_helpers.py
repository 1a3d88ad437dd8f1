"""What the several-node tests share."""
import time


def step_logged(outf, timeout=180):
    """Whether a training step reaches OUTF/metrics.jsonl within ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = outf / "metrics.jsonl"
        if path.exists() and '"kind": "step"' in path.read_text():
            return True
        time.sleep(0.2)
    return False
