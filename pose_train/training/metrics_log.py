"""Metrics as JSON lines in the output folder (readable with any tool) and, beside them,
TensorBoard event files in OUTF/tensorboard/ (scalars per step and epoch, images now and then).
"""
import json
import os
import time

from pose_train import environment

# Images go to TensorBoard every this many steps (POSE_TRAIN_TB_IMAGES_EVERY; 0: never).
IMAGES_ENV, IMAGES_EVERY = environment.TB_IMAGES_EVERY, 500


class MetricsLog:
    """Appends one JSON object per line; a resumed run keeps appending to the same file.

    Each record's numbers also become TensorBoard scalars named ``KIND/FIELD`` (kind "step"
    records count steps, the others epochs), in ``tensorboard`` (a folder) when given.
    """

    def __init__(self, path, enabled=True, tensorboard=None):
        self.path = os.fspath(path)
        self.enabled = enabled
        self._f, self._tb, self.global_step = None, None, 0
        self.images_every = int(os.environ.get(IMAGES_ENV, IMAGES_EVERY))
        if enabled:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._f = open(self.path, "a", buffering=1)  # line-buffered: survives a kill
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:     # outside the images (a bare benchmark machine)
                    print("note: tensorboard is not installed; metrics go to %s only"
                          % self.path)
                else:
                    self._tb = SummaryWriter(log_dir=tensorboard)

    def write(self, **fields):
        if self._f is None:
            return
        fields.setdefault("time", round(time.time(), 3))
        self._f.write(json.dumps(fields, sort_keys=True) + "\n")
        self.scalars(**fields)

    def scalars(self, at=None, **fields):
        """The record's numbers to TensorBoard only (metrics.jsonl untouched); ``at``: the
        global step, when the caller logs only some steps."""
        if self._tb is None:
            return
        kind = fields.get("kind", "epoch")
        if kind == "step":
            self.global_step = self.global_step + 1 if at is None else at
        if at is None:
            at = self.global_step if kind == "step" else int(fields.get("epoch", 0))
        for key, value in fields.items():
            if key not in ("time", "epoch", "step", "kind") and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                self._tb.add_scalar("%s/%s" % (kind, key), float(value), at)

    def wants_images(self):
        """Whether this step's batch should be drawn (the step just written)."""
        return (self._tb is not None and self.images_every > 0
                and self.global_step % self.images_every == 1 % self.images_every)

    def image(self, tag, rgb):
        """An RGB uint8 (H, W, 3) picture at the current step."""
        if self._tb is not None:
            self._tb.add_image(tag, rgb, self.global_step, dataformats="HWC")

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

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


def rewind(path, at=None):
    """Make a run's metrics file agree with where the run starts: a fresh run (``at`` None)
    starts a fresh file; a run resumed at (epoch, step), counted as its state file counts them,
    keeps only the records from before that point (a killed run's later steps, or its epoch 1
    when it restarts fresh, would otherwise appear twice). Returns how many records were dropped."""
    if not os.path.isfile(path):
        return 0
    records = read_metrics(path)
    keep = [r for r in records if at is not None and _before(r, at)]
    from pose_train.files import atomic_write
    atomic_write(path, lambda f: f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)),
                 binary=False)
    return len(records) - len(keep)


def _before(record, at):
    epoch, step = at
    if "step" in record:
        return (record.get("epoch", 0), record["step"]) <= (epoch, step)
    return record.get("epoch", 0) < epoch
