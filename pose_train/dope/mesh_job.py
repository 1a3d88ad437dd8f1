"""`pose-train synth dope --mesh`: the job's arguments checked and made into a mesh_frames.Setup,
the output folder's settings record, and the run.

Everything a user can get wrong is checked here, once, before a frame is written: the mesh and
the files it names, its units, the camera, the symmetries, the backgrounds, and a folder that
already holds frames made with other settings (a rerun resumes only the same dataset).
"""
import json
import os
import re

import cv2
import numpy as np

from pose_train.dope import mesh_frames, meshes, symmetry
from pose_train.dope.scenery import DEFAULT_SIZE, parse_distance
from pose_train.errors import UserError
from pose_train.files import atomic_write_json, sha256_of

SETTINGS = "_synth_settings.json"   # NDDS-style side file: not a frame to any reader
LARGEST_DEFAULT_M = 3.0     # a box this big is a model in mm or cm (or a wrong --scale)
SMALLEST_M = 0.001          # a box smaller than 1 mm has the wrong --scale (or none)
MAX_WORKERS = 8


def _object_name(args):
    name = args.object or os.path.splitext(os.path.basename(args.mesh))[0]
    return name.lower()


def _camera(args):
    """(K, width, height): from --camera (its size wins), else --fx/--fy and the frame size."""
    from pose_train.dope.geometry import intrinsics_matrix
    if not args.camera:
        width, height = args.width or DEFAULT_SIZE[0], args.height or DEFAULT_SIZE[1]
        fx = args.fx or 0.9 * width
        return intrinsics_matrix(fx, args.fy or fx, width / 2.0, height / 2.0), width, height
    if args.fx or args.fy:
        raise UserError("--camera %s already gives the focal lengths; drop --fx/--fy" % args.camera)
    if not os.path.isfile(args.camera):
        raise UserError("--camera %s is not a file; pass a ROS camera_info YAML or a DOPE frame "
                        "JSON, or drop it for --fx/--fy" % args.camera)
    from pose_train_py27.dope_io import camera_from_file
    from pose_train_py27.errors import InputError
    try:
        cam = camera_from_file(args.camera)
    except InputError as err:   # its fix names infer's flags; synth's are these
        raise UserError(re.sub(r"pass (a camera file or )?--fx --fy --cx --cy",
                               "pass a ROS camera_info YAML or a DOPE frame JSON, or --fx/--fy "
                               "without --camera", str(err)))
    width, height = _camera_size(args.camera, cam)
    if (args.width or width, args.height or height) != (width, height):
        raise UserError("--camera %s is %dx%d; drop --width/--height (the camera's calibration "
                        "is for its own size)" % (args.camera, width, height))
    return intrinsics_matrix(cam["fx"], cam["fy"], cam["cx"], cam["cy"]), width, height


def _camera_size(path, cam):
    """The size the camera was calibrated at: the frames are rendered at it, so a zero, a
    missing or an absurd one is refused before anything is written."""
    from pose_train.jobs import JOBS
    fields = {f.name: f for f in JOBS["synth-dope"].fields}
    size = []
    for key in ("width", "height"):
        value, field = cam.get(key), fields[key]
        if not value:
            raise UserError("--camera %s gives no image %s: the frames are "
                            "rendered at the size the camera was calibrated for; write it into "
                            "the file" % (path, key))
        if not field.low <= value <= field.high:
            raise UserError("--camera %s: image %s %d is outside %d..%d, the sizes synth dope "
                            "renders" % (path, key, value, field.low, field.high))
        size.append(int(value))
    return tuple(size)


def _symmetries(args, mesh):
    """The object's symmetries; BOP's models are named obj_NNNNNN, which names the entry."""
    if args.symmetry_id and not args.symmetry:
        raise UserError("--symmetry_id %s needs --symmetry models_info.json" % args.symmetry_id)
    if not args.symmetry:
        return symmetry.NONE
    wanted = args.symmetry_id
    named = re.match(r"obj_0*(\d+)$", os.path.splitext(os.path.basename(args.mesh))[0])
    if wanted is None and named:
        wanted = named.group(1)
    found = symmetry.read(args.symmetry, wanted, args.scale)
    symmetry.check(found, mesh.rows[:, :3].astype(np.float64).reshape(-1, 3, 3), args.symmetry)
    if wanted is None:
        print("pose-train: --symmetry: %s holds one object; its symmetries label %s"
              % (args.symmetry, _object_name(args)))
    if not found:
        print("pose-train: warning: %s gives %s no symmetries: its frames are labelled as an "
              "asymmetric object's" % (args.symmetry, "object %s" % wanted if wanted else "the object"))
    return found


def _check_scale(args, mesh):
    diagonal = float(np.linalg.norm(mesh.dimensions))
    if diagonal < SMALLEST_M:
        raise UserError("%s is %.3g mm across at --scale %g: too small to render (its box and "
                        "distractors vanish); pass the --scale that makes it metres"
                        % (args.mesh, 1000 * diagonal, args.scale))
    cm = mesh.dimensions * 100
    if diagonal > LARGEST_DEFAULT_M:
        raise UserError("%s is %.0f x %.0f x %.0f cm at --scale %g: %s" % (
            args.mesh, cm[0], cm[1], cm[2], args.scale,
            "is it in mm? pass --scale 0.001 (cm: --scale 0.01)" if args.scale == 1.0 else
            "pass the --scale that makes it metres (mm: 0.001, cm: 0.01)"))
    if mesh.dimensions.min() < 1e-4 * diagonal:
        raise UserError("%s is flat (its box is %.1f x %.1f x %.1f cm): DOPE's cuboid needs a "
                        "thickness, or its corners coincide; model the object's real "
                        "thickness" % (args.mesh, cm[0], cm[1], cm[2]))


def _checked_backgrounds(folder):
    """Every background decodes (at an eighth of its size, to be quick), or one line naming it."""
    files = mesh_frames.background_files(folder)
    for path in files:
        if cv2.imread(path, cv2.IMREAD_REDUCED_GRAYSCALE_8) is None and cv2.imread(
                path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR) is None:
            raise UserError("%s: not a readable image; remove it from --backgrounds" % path)
    return files


def setup_from_args(args):
    """A Setup from the job's arguments, every input checked; (setup, the object's mesh)."""
    mesh = meshes.load(args.mesh, args.scale)
    _check_scale(args, mesh)
    if mesh.plain:
        print("pose-train: warning: %s has no texture and no colours: it is drawn grey in every "
              "frame, and only its shape tells its corners apart" % args.mesh)
    K, width, height = _camera(args)
    distance = (parse_distance(args.distance) if args.distance else
                mesh_frames.auto_distance(mesh.dimensions, K, width, height))
    distractors = meshes.mesh_files(args.distractors, "--distractors") if args.distractors else []
    for path in distractors:
        meshes.load(path, args.scale)
    return mesh_frames.Setup(
        mesh=args.mesh, scale=args.scale, object_name=_object_name(args), width=width,
        height=height, K=K, seed=args.seed, distance=tuple(distance),
        instances=args.instances, distractors=distractors, max_distractors=args.max_distractors,
        backgrounds=_checked_backgrounds(args.backgrounds) if args.backgrounds else [],
        extras=args.extras, symmetries=_symmetries(args, mesh)), mesh


def settings_record(setup, files):
    """What makes the frames what they are (not how many, nor who drew them). ``files``: what
    the mesh loads besides itself (meshes.MeshData.files), hashed too."""
    return {
        "mesh": os.path.basename(setup.mesh), "mesh_sha256": sha256_of(setup.mesh),
        "mesh_files_sha256": {os.path.relpath(p, os.path.dirname(setup.mesh)): sha256_of(p)
                              for p in files},
        "scale": setup.scale, "object": setup.object_name, "width": setup.width,
        "height": setup.height, "K": np.round(setup.K, 6).tolist(), "seed": setup.seed,
        "distance_m": [round(v, 6) for v in setup.distance], "instances": setup.instances,
        "distractors": [sha256_of(p) for p in setup.distractors],
        "max_distractors": setup.max_distractors,
        "backgrounds": [os.path.basename(p) for p in setup.backgrounds], "extras": setup.extras,
        "symmetries": [np.round(S, 6).tolist() for S in setup.symmetries.discrete[1:]] +
                      [np.round(a, 6).tolist() for a, _ in setup.symmetries.axes]}


def claim_folder(out, record):
    """Record the settings in ``out``; refuse a folder whose frames were made with others."""
    path = os.path.join(out, SETTINGS)
    if os.path.isfile(path):
        with open(path) as f:
            before = json.load(f)
        # A key an older pose-train did not record cannot be compared (mesh_files_sha256).
        changed = [k for k in record if k in before and before[k] != record[k]]
        if changed:
            raise UserError("%s holds frames made with another %s (%s); a rerun only resumes "
                            "the same dataset: pass another --out, or delete that folder"
                            % (out, _what_changed(changed[0], before[changed[0]],
                                                  record[changed[0]]), SETTINGS))
        return
    if any(name.endswith(".json") for name in os.listdir(out)):
        raise UserError("%s already holds frames that synth dope --mesh did not record; pass "
                        "an empty or new --out" % out)
    atomic_write_json(path, record)


def _say_frames_beyond(out, n):
    """An earlier, larger --n left frames past this one's: a trainer reads them all."""
    beyond = [name for name in os.listdir(out) if name.endswith(".json")
              and name[:-5].isdigit() and int(name[:-5]) >= n]
    if beyond:
        print("pose-train: note: %s also holds %d frame(s) past --n %d from an earlier run; a "
              "trainer reads every frame there (%d), so delete them or pass a new --out for %d"
              % (out, len(beyond), n, n + len(beyond), n))


def _what_changed(key, before, now):
    if key == "mesh_files_sha256":
        files = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        return "%s (changed since: %s)" % (key, ", ".join(files))
    return key


def main(args):
    from pose_train.dope import render
    from pose_train.files import job_folder
    setup, mesh = setup_from_args(args)
    indices = mesh_frames.shard_indices(args.n, args.shard)
    if not indices:
        print("pose-train: --shard %s of --n %d holds no frames (shard I writes frames I, I+N, "
              "...): nothing to write; use at most %d shards" % (args.shard, args.n, args.n))
        return 0
    ctx = render.create_context()   # no EGL: one line now, not one per worker
    renderer = ctx.info["GL_RENDERER"]
    ctx.release()
    cores = os.cpu_count() or 1
    # More processes than cores only slows llvmpipe down (each already draws with threads).
    workers = min(args.workers or min(cores, MAX_WORKERS), cores, max(1, len(indices)))
    if args.workers and workers < args.workers:
        print("pose-train: --workers %d: using %d (one per core, and at most one per frame)"
              % (args.workers, workers))
    with job_folder(args.out, flag="--out"):   # no claim: --shard runs share a folder
        settings = os.path.join(args.out, SETTINGS)
        claimed = not os.path.isfile(settings)
        claim_folder(args.out, settings_record(setup, mesh.files))
        try:
            written, kept = mesh_frames.write_frames(setup, args.out, indices, workers)
        except BaseException:
            # Stopped with frames there, the record stays (a rerun resumes); with none, it goes.
            if claimed and not any(n.endswith(".json") and n != SETTINGS
                                   for n in os.listdir(args.out)):
                os.remove(settings)
            raise
    _say_frames_beyond(args.out, args.n)
    dims = mesh.dimensions * 100
    print("wrote %d frames to %s%s (class %r, cuboid %.1f x %.1f x %.1f cm, %d triangles%s, "
          "%dx%d fx %.1f, %.2f-%.2f m away, %s)"
          % (written, args.out, ", kept %d already there" % kept if kept else "",
             setup.object_name, dims[0], dims[1], dims[2], mesh.triangles,
             ", symmetric: canonical labels" if setup.symmetries else "", setup.width,
             setup.height, setup.K[0, 0], setup.distance[0], setup.distance[1], renderer))
    return 0
