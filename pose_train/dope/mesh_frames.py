"""`pose-train synth dope --mesh FILE`: a DOPE dataset of your own object, rasterised headless.

Per frame, as DOPE's generators randomise: the object's pose and distance (its centre kept in
frame), ``--instances`` copies of it, distractors (your meshes, or random primitives) some of
them placed to occlude, 1-4 coloured lights, a background (your images or procedural ones),
then colour jitter, blur and sensor noise. Each frame is drawn from its own seed (the run's
seed and the frame's index), so any worker count, any resume and any shard give the same
bytes. The cuboid is the mesh's axis-aligned box in its own frame; ``location`` is the box's
centre in the camera frame (what the node's PnP publishes), the rotation the mesh's.
"""
import os
import sys
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from pose_train.dope import meshes, symmetry
from pose_train.dope.geometry import project, random_quat_xyzw
from pose_train.dope.render import Renderer
from pose_train.dope.scenery import background
from pose_train.errors import UserError
from pose_train.files import atomic_write, atomic_write_json
from pose_train_py27.cuboid import cuboid_vertices, quat_xyzw_to_matrix

# The object's box diagonal spans this fraction of the frame's shorter side (the default range
# of distances): small enough to leave context, large enough for the belief maps.
APPARENT = (0.18, 0.6)
BACKGROUND_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".hdr", ".exr", ".tif", ".tiff")
PRIMITIVES = 16
NOISE_MARGIN = 64


@dataclass
class Setup:
    """Everything a worker needs to draw any frame; plain values, so it pickles to workers."""
    mesh: str
    scale: float
    object_name: str
    width: int
    height: int
    K: np.ndarray
    seed: int
    distance: tuple
    instances: int = 1
    distractors: list = field(default_factory=list)   # mesh files; empty: primitives
    max_distractors: int = 5
    min_distractors: int = 0
    backgrounds: list = field(default_factory=list)
    extras: bool = False
    symmetries: symmetry.Symmetries = field(default_factory=lambda: symmetry.NONE)


def auto_distance(dimensions, K, width, height):
    """The distance range that gives the object's box the APPARENT share of the frame."""
    diagonal = float(np.linalg.norm(dimensions))
    side = min(width, height)
    f = float(min(K[0, 0], K[1, 1]))
    return f * diagonal / (APPARENT[1] * side), f * diagonal / (APPARENT[0] * side)


def background_files(folder):
    if not os.path.isdir(folder):
        raise UserError("--backgrounds %s is not a folder; pass a folder of images" % folder)
    found = sorted(os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
                   if n.lower().endswith(BACKGROUND_EXTS))
    if not found:
        raise UserError("--backgrounds %s holds no images (%s)" % (folder, ", ".join(BACKGROUND_EXTS)))
    return found


def _read_background(path, rng, width, height):
    image = cv2.imread(path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    if image is None:
        raise UserError("%s: not a readable image; remove it from --backgrounds" % path)
    if image.dtype != np.uint8:   # HDR: a random exposure, tone-mapped
        image = image.astype(np.float32) * rng.uniform(0.5, 2.0)
        image = np.clip(255 * image / (1.0 + image), 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    crop = rng.uniform(0.5, 1.0)
    cw, ch = max(1, int(w * crop)), max(1, int(h * crop))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = cv2.resize(image[y:y + ch, x:x + cw], (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _pose(R, location, scale=1.0, centre=np.zeros(3)):
    """The 4x4 model-to-camera matrix that puts the box centre ``centre`` at ``location``."""
    pose = np.eye(4)
    pose[:3, :3] = R * scale
    pose[:3, 3] = np.asarray(location) - R @ (np.asarray(centre) * scale)
    return pose


def _in_frame(rng, K, width, height, z):
    u, v = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    return np.linalg.inv(K) @ np.array([u, v, 1.0]) * z


def _lights(rng):
    lights = []
    for _ in range(int(rng.integers(1, 5))):
        d = rng.normal(size=3)
        d[2] = abs(d[2]) + 0.3   # light travels away from the camera's side
        tint = rng.uniform(0.7, 1.0, 3)
        lights.append((d / np.linalg.norm(d), tint * rng.uniform(0.3, 1.0)))
    return lights, np.full(3, rng.uniform(0.1, 0.45)) * rng.uniform(0.85, 1.0, 3)


def _camera_effects(rng, image, noise):
    """Colour gain and offset, contrast, sometimes blur, then sensor noise: a random crop of
    the worker's noise field (drawing fresh Gaussian noise per frame costs more than the render)."""
    gain = (rng.uniform(0.8, 1.2, 3) * rng.uniform(0.8, 1.2)).astype(np.float32)
    out = image.astype(np.float32)
    mean = float(out.mean())
    out = (out - mean) * gain + np.float32(mean + rng.uniform(-20, 20))
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    h, w = image.shape[:2]
    dy, dx = (int(v) for v in rng.integers(0, NOISE_MARGIN + 1, 2))
    out += noise[dy:dy + h, dx:dx + w] * np.float32(rng.uniform(0, 5))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class FrameMaker:
    """One worker's renderer with every mesh uploaded once; ``frame(i)`` draws frame i."""

    def __init__(self, setup):
        self.s = setup
        self.renderer = Renderer(setup.width, setup.height, setup.K)
        self.object = meshes.load(setup.mesh, setup.scale)
        self.handle = self.renderer.add_mesh(self.object.rows, self.object.texture)
        diagonal = float(np.linalg.norm(self.object.dimensions))
        pool = ([meshes.load(p, setup.scale) for p in setup.distractors] if setup.distractors else
                meshes.primitives(np.random.default_rng([setup.seed, 1 << 30]), PRIMITIVES, diagonal))
        self.pool = [(self.renderer.add_mesh(m.rows, m.texture), m) for m in pool]
        self.noise = np.random.default_rng([setup.seed, 1 << 31]).standard_normal(
            (setup.height + NOISE_MARGIN, setup.width + NOISE_MARGIN, 3), dtype=np.float32)

    def _distractors(self, rng, placed):
        items, diagonal = [], float(np.linalg.norm(self.object.dimensions))
        for k in range(int(rng.integers(self.s.min_distractors, self.s.max_distractors + 1))):
            handle, mesh = self.pool[int(rng.integers(0, len(self.pool)))]
            size = diagonal * rng.uniform(0.4, 1.2) / max(float(np.linalg.norm(mesh.dimensions)), 1e-9)
            target = placed[int(rng.integers(0, len(placed)))][1]
            if rng.random() < 0.4:   # an occluder, part-way to one instance
                where = target * rng.uniform(0.45, 0.8) + rng.normal(0, diagonal * 0.4, 3)
            else:
                where = _in_frame(rng, self.s.K, self.s.width, self.s.height,
                                  rng.uniform(*self.s.distance) * rng.uniform(0.8, 1.6))
            where[2] = max(where[2], 3 * diagonal)
            R = quat_xyzw_to_matrix(random_quat_xyzw(rng))
            items.append((handle, _pose(R, where, size, mesh.centre), 1 + self.s.instances + k))
        return items

    def frame(self, index):
        """(rgb, objects records, ids, depth) of frame ``index``."""
        s = self.s
        # The class is in the seed: two objects' datasets of one --seed differ in every frame.
        rng = np.random.default_rng([s.seed, zlib.crc32(s.object_name.encode("utf-8")), index])
        placed = []
        for _ in range(s.instances):
            quat = random_quat_xyzw(rng)
            placed.append((quat, _in_frame(rng, s.K, s.width, s.height, rng.uniform(*s.distance))))
        items = [(self.handle, _pose(quat_xyzw_to_matrix(q), loc, 1.0, self.object.centre), i + 1)
                 for i, (q, loc) in enumerate(placed)]
        items += self._distractors(rng, placed)
        lights, ambient = _lights(rng)
        image = (_read_background(s.backgrounds[int(rng.integers(0, len(s.backgrounds)))], rng,
                                  s.width, s.height)
                 if s.backgrounds else background(rng, s.width, s.height, noise=False))
        rgb, ids, depth = self.renderer.render(items, lights, ambient, rng.uniform(0, 0.5),
                                               rng.uniform(8, 64), depth=s.extras)
        mask = ids > 0
        image[mask] = rgb[mask]
        image = _camera_effects(rng, image, self.noise)
        full = self.renderer.silhouettes(items[:s.instances])
        records = [self._record(i, quat, loc, ids, full[i]) for i, (quat, loc) in enumerate(placed)]
        return image, records, ids, depth

    def _record(self, i, quat, location, ids, full):
        quat, location = symmetry.canonical(quat, location, self.object.centre, self.s.symmetries)
        dims = self.object.dimensions
        uv, _ = project(cuboid_vertices(dims), quat, location, self.s.K)
        seen = int((ids == i + 1).sum())
        return {"class": self.s.object_name, "name": "%s_%d" % (self.s.object_name, i),
                "visibility": round(seen / full, 4) if full else 0.0,
                "location": [float(v) for v in location],
                "quaternion_xyzw": [float(v) for v in quat],
                "projected_cuboid": [[float(a), float(b)] for a, b in uv],
                "cuboid_dimensions": [float(v) for v in dims],
                **({"symmetric": True} if self.s.symmetries else {})}


def camera_data(setup):
    K = setup.K
    return {"intrinsics": {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]),
                           "cy": float(K[1, 2])},
            "width": setup.width, "height": setup.height}


def _png(path, image):
    ok, data = cv2.imencode(".png", image)
    atomic_write(path, lambda f: f.write(data.tobytes()))


def write_frame(maker, out, index):
    """Draw frame ``index`` and write it: PNG first, the JSON last, so a frame whose JSON is
    there is complete (what a resumed run keeps)."""
    image, records, ids, depth = maker.frame(index)
    stem = os.path.join(out, "%06d" % index)
    _png(stem + ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if maker.s.extras:
        _png(stem + ".seg.png", ids.astype(np.uint16))
        _png(stem + ".depth.png", np.clip(np.rint(depth * 1000), 0, 65535).astype(np.uint16))
    atomic_write_json(stem + ".json", {"camera_data": camera_data(maker.s), "objects": records})
    return index


def done(out, index):
    stem = os.path.join(out, "%06d" % index)
    return os.path.isfile(stem + ".json") and os.path.isfile(stem + ".png")


_MAKER = None


def _start_worker(setup, threads):
    global _MAKER
    if threads:   # llvmpipe would start a thread per core in every worker
        os.environ.setdefault("LP_NUM_THREADS", str(threads))
    _MAKER = FrameMaker(setup)


def _work(job):
    out, index = job
    return write_frame(_MAKER, out, index)


def shard_indices(n, shard):
    """Frames I, I+N, ... of ``n`` for ``--shard I/N`` (None: all)."""
    if not shard:
        return list(range(n))
    try:
        i, count = (int(v) for v in str(shard).split("/"))
    except ValueError:
        i, count = -1, 0
    if not 0 <= i < count:
        raise UserError("--shard takes I/N with 0 <= I < N (this machine's share of N), e.g. "
                        "0/2 and 1/2; got %r" % shard)
    return list(range(i, n, count))


def write_frames(setup, out, indices, workers=1, progress=True):
    """Write every frame in ``indices`` that ``out`` lacks; returns (written, kept). Stopped
    (Ctrl-C, SIGTERM), it says how many frames are there: a rerun writes the rest."""
    from tqdm import tqdm
    todo = [i for i in indices if not done(out, i)]
    bar = tqdm(total=len(todo), desc="synth dope --mesh", disable=not progress, unit="img")
    try:
        _write(setup, out, todo, workers, bar)
    except (KeyboardInterrupt, SystemExit):
        bar.close()
        print("synth dope --mesh: stopped with %d of %d frames in %s; the same command writes "
              "the rest" % (sum(done(out, i) for i in indices), len(indices), out),
              file=sys.stderr, flush=True)
        raise
    bar.close()
    return len(todo), len(indices) - len(todo)


def _write(setup, out, todo, workers, bar):
    if workers <= 1 or len(todo) <= 1:
        maker = FrameMaker(setup)
        try:
            for i in todo:
                write_frame(maker, out, i)
                bar.update()
        finally:
            maker.renderer.release()
        return
    import multiprocessing
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn: a fresh process per worker, each with its own EGL context (never forked).
    with multiprocessing.get_context("spawn").Pool(
            workers, initializer=_start_worker, initargs=(setup, threads)) as pool:
        for _ in pool.imap_unordered(_work, [(out, i) for i in todo]):
            bar.update()
