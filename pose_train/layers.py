"""The layers of pose-train's code, lowest first. A module imports only from its own layer or
a lower one, so a trainer never pulls in the launcher, and the Python 2.7 core nothing at all
of the rest; tests/test_layers.py checks every import against this table, the ones inside
functions too. A module belongs to the longest prefix listed."""

LAYERS = (
    ("pose_train_py27",),                                     # the 2.7 core both runtimes run
    ("pose_train", "pose_train.errors", "pose_train.environment", "pose_train.layers",
     "pose_train.files", "pose_train.pretrained", "pose_train.training"),   # shared pieces
    ("pose_train.jobs",),                                     # what each job takes (no torch)
    ("pose_train.dope", "pose_train.keypoints"),              # the networks, their data, jobs
    ("pose_train.compat",),                                   # conversion and export of them
    ("pose_train.launcher",),                                 # Docker, GPUs, images
    ("pose_train.cli", "pose_train.__main__"),                # the one entry and error boundary
)


def layer_of(module):
    """Index in LAYERS of ``module`` (a dotted name), or None when it is not ours."""
    best = None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                    best is None or len(name) > best[1]):
                best = (index, len(name))
    return None if best is None else best[0]
