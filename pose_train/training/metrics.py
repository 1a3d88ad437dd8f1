"""Metrics as JSON lines in the output folder: readable with any tool, no TensorBoard needed.
"""
import json
import os
import time


class MetricsLog:
    """Appends one JSON object per line; a resumed run keeps appending to the same file."""

    def __init__(self, path, enabled=True):
        self.path = os.fspath(path)
        self.enabled = enabled
        self._f = None
        if enabled:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._f = open(self.path, "a", buffering=1)  # line-buffered: survives a kill

    def write(self, **fields):
        if self._f is not None:
            fields.setdefault("time", round(time.time(), 3))
            self._f.write(json.dumps(fields, sort_keys=True) + "\n")

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def read_metrics(path):
    """All records of a metrics file (a half-written last line from a kill is skipped)."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
