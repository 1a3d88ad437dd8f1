"""The data report a scan writes: one ``file: reason`` line per problem, counted by kind,
the corner orders found, and the one-line summary every job prints."""
import os

from pose_train.dope import corner_order
from pose_train.files import atomic_write


class DataReport:
    """Collects ``file: reason`` lines by kind; ``fatal`` kinds make --strict fail."""

    def __init__(self):
        self.lines = []
        self.kinds = []
        self.counts = {}
        self.orders = {}   # corner order name -> objects checked in it (see corner_order)

    def add(self, kind, path, reason):
        self.lines.append("%s: %s" % (path, reason))
        self.kinds.append(kind)
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def summary(self, n_used):
        parts = ", ".join("%d %s" % (v, k) for k, v in sorted(self.counts.items()))
        orders = "; corner order (objects checked against their own pose): %s" % ", ".join(
            "%s %d%s" % (k, v, " (put right)" if k in corner_order.ORDERS and k != "nvisii" else "")
            for k, v in sorted(self.orders.items())) if self.orders else ""
        return "data report: %d images used; %s%s" % (n_used, parts or "no problems found", orders)

    def write(self, path, n_used):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        text = "".join(line + "\n" for line in self.lines) + self.summary(n_used) + "\n"
        return atomic_write(path, lambda f: f.write(text), binary=False)
