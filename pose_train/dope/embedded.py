"""The embedded dataset `train dope` uses without --data: the carton of default_object,
rendered once by `synth dope --mesh`'s renderer and cached.

It renders through Mesa's software EGL whatever the machine has (when Mesa's EGL is there):
a few hundred small frames take seconds on a CPU, and the first run a user tries must not
depend on a GPU driver's EGL being mounted into the container.
"""
import os

from pose_train import environment
from pose_train.dope import default_object, mesh_frames
from pose_train.dope.geometry import intrinsics_matrix
from pose_train.dope.synth import DEFAULT_DISTANCE
from pose_train.files import atomic_folder

MESA_EGL = "/usr/share/glvnd/egl_vendor.d/50_mesa.json"
DISTRACTORS = 3


def write(out, n, seed=0, width=640, height=480, object_name="cube", distance=DEFAULT_DISTANCE,
          progress=False):
    """``n`` frames of the carton (class ``object_name``) into ``out``; returns ``out``."""
    if os.path.isfile(MESA_EGL):
        os.environ.setdefault("__EGL_VENDOR_LIBRARY_FILENAMES", MESA_EGL)
    f = 0.9 * width
    setup = mesh_frames.Setup(
        mesh=default_object.MESH, scale=1.0, object_name=object_name.lower(), width=width,
        height=height, K=intrinsics_matrix(f, f, width / 2.0, height / 2.0), seed=seed,
        distance=tuple(distance), max_distractors=DISTRACTORS)
    os.makedirs(out, exist_ok=True)
    mesh_frames.write_frames(setup, out, range(n), workers=1, progress=progress)
    return out


def cached_dataset(outf, n, seed=0, width=640, height=480, object_name="cube",
                   distance=DEFAULT_DISTANCE):
    """(path, made): generated once per (n, seed, size, object, distance), then reused.

    Lives in $POSE_TRAIN_CACHE if set, else <outf>/.cache. Generated into a temp folder and
    renamed, so an interrupted generation is never mistaken for a complete one.
    """
    root = os.environ.get(environment.CACHE) or os.path.join(outf, ".cache")
    key = "synth-carton-%s-n%d-seed%d-%dx%d-%g-%gm" % (object_name.lower(), n, seed, width, height,
                                                       distance[0], distance[1])
    path = os.path.join(root, key)
    if os.path.isdir(path):
        return path, False
    os.makedirs(root, exist_ok=True)
    atomic_folder(path, lambda tmp: write(tmp, n, seed, width, height, object_name, distance))
    return path, True
