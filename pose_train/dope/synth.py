"""`pose-train synth dope`: a synthetic NViSII-format DOPE dataset, no download needed.

Each image shows one textured cuboid of the requested class (sometimes with a distractor cuboid
of another class) in a random pose over a random background, seen by a pinhole camera.

What makes the pose learnable: the object class keeps ONE appearance across the whole dataset
(six distinct face textures drawn from a generator seeded by the class name, as a real product
looks the same in every photo), and its sides are unequal. A 10 x 8 x 6 cm box has four
rotations with the same silhouette; only its faces tell FrontTopRight from RearBottomLeft, so
textures drawn anew per frame would make the corner labels ambiguous. Pose, distance, lighting,
background and noise vary per frame; the distractor's look varies freely. The json
beside each PNG carries exactly what current DOPE data carries: objects[].class / visibility /
projected_cuboid (8 corners + centroid) / location (metres) / quaternion_xyzw, and
camera_data.intrinsics. Projections are exact (no rounding), so they are also a geometry oracle.
"""
import json
import os
import zlib

import cv2
import numpy as np
from tqdm import tqdm

from pose_train.dope.geometry import (FACE_NORMALS, FACES, intrinsics_matrix, project,
                                      quat_xyzw_to_matrix, random_quat_xyzw)
from pose_train.dope.scenery import DEFAULT_SIZE, background, parse_distance  # noqa: F401 (synth's API)
from pose_train.errors import UserError
from pose_train.files import make_folder
from pose_train_py27.cuboid import cuboid_vertices

# Physical size (metres) of the generated object and of the distractor: not a cube on purpose,
# distinct face textures + unequal sides keep the pose unambiguous.
OBJECT_SIZE = (0.10, 0.08, 0.06)
DISTRACTOR_SIZE = (0.07, 0.07, 0.12)
DISTRACTOR_CLASS = "distractor"
# Metres from the camera to the object's centre. At 640x480 (fx = 0.9 x width) the object then
# spans ~70-180 px; docs/your-own-object.md has the range that suits a small crop.
DEFAULT_DISTANCE = (0.35, 0.9)


def _texture(rng, size=64):
    """A face texture: base colour, stripes or checks, and a few blobs (so faces differ)."""
    base = rng.integers(30, 226, size=3)
    tex = np.empty((size, size, 3), np.uint8)
    tex[:] = base
    other = rng.integers(0, 256, size=3).tolist()
    period = int(rng.integers(6, 20))
    yy, xx = np.mgrid[0:size, 0:size]
    mask = ((xx // period + (yy // period) * int(rng.integers(0, 2))) % 2) == 0
    tex[mask] = other
    for _ in range(3):
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(tex, c, int(rng.integers(3, 12)), rng.integers(0, 256, 3).tolist(), -1)
    return tex


def class_textures(object_name):
    """The six face textures of a class: the same for every frame and every run."""
    rng = np.random.default_rng(zlib.crc32(str(object_name).lower().encode("utf-8")))
    hue0 = rng.uniform(0, 180)
    looks = {}
    for k, face in enumerate(sorted(FACES)):
        # Each face half its own saturated hue, 60 degrees apart: faces that differ at a glance,
        # even at the few pixels a small crop leaves them.
        hsv = np.uint8([[[int(hue0 + 30 * k) % 180, 200, 230]]])
        tint = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
        looks[face] = (0.5 * _texture(rng) + 0.5 * tint).astype(np.uint8)
    return looks


def _light(rng):
    """The direction light travels and the ambient level, per frame. It travels away from
    the camera's side (+z), so the faces the camera sees are the lit ones."""
    d = rng.normal(size=3)
    d[2] = abs(d[2]) + 0.5
    return d / np.linalg.norm(d), float(rng.uniform(0.25, 0.6))


def _render_cuboid(img, ids, obj_id, uv, cam, quat, textures, light=None):
    """Paint the visible faces of one cuboid (convex: back-face culling is enough).

    textures=None only marks the silhouette in ``ids`` and leaves ``img`` alone.
    """
    R = quat_xyzw_to_matrix(quat)
    light, ambient = light or (np.array([0.3, -0.5, -0.8]) / np.linalg.norm([0.3, -0.5, -0.8]), 0.45)
    height, width = img.shape[:2]
    for name, quad in FACES.items():
        normal = R @ np.asarray(FACE_NORMALS[name], dtype=np.float64)
        if normal @ cam[list(quad)].mean(axis=0) >= 0:   # facing away from the camera
            continue
        mask = np.zeros((height, width), np.uint8)
        cv2.fillConvexPoly(mask, np.round(uv[list(quad)] * 16).astype(np.int32), 1,
                           lineType=cv2.LINE_8, shift=4)
        if textures is None:       # silhouette only (visibility denominator)
            ids[mask.astype(bool)] = obj_id
            continue
        tex = textures[name]
        t = tex.shape[0] - 1
        src = np.float32([[t, 0], [0, 0], [0, t], [t, t]])
        H = cv2.getPerspectiveTransform(src, uv[list(quad)].astype(np.float32))
        warped = cv2.warpPerspective(tex, H, (width, height), flags=cv2.INTER_LINEAR)
        shade = ambient + (1.0 - ambient) * max(0.0, float(-(normal @ light)))
        sel = mask.astype(bool)
        img[sel] = np.clip(warped[sel].astype(np.float32) * shade, 0, 255).astype(np.uint8)
        ids[sel] = obj_id


def _sample_pose(rng, K, width, height, distance):
    """A pose whose centroid projects inside the central part of the image."""
    z = rng.uniform(*distance)
    u = rng.uniform(0.15 * width, 0.85 * width)
    v = rng.uniform(0.15 * height, 0.85 * height)
    location = np.linalg.inv(K) @ np.array([u, v, 1.0]) * z
    return random_quat_xyzw(rng), location


def render_sample(rng, width, height, object_name, K, distance=DEFAULT_DISTANCE, look=None):
    """One image + its objects list (DOPE NViSII fields). ``look``: the object's face
    textures (default: its class's)."""
    img = background(rng, width, height)
    ids = np.zeros((height, width), np.int16)
    objects = [(object_name, OBJECT_SIZE)]
    if rng.random() < 0.3:
        objects.append((DISTRACTOR_CLASS, DISTRACTOR_SIZE))
    looks = [look or class_textures(object_name)] + [None] * (len(objects) - 1)
    light = _light(rng)
    posed = []
    for name, size in objects:
        scale = max(size) / max(OBJECT_SIZE)   # the distractor sits at a similar apparent size
        quat, loc = _sample_pose(rng, K, width, height, [d * scale for d in distance])
        uv, cam = project(cuboid_vertices(size), quat, loc, K)
        posed.append((name, size, quat, loc, uv, cam))
    # Painter's order: far first. Pixel counts drawn alone give the visibility denominators.
    order = sorted(range(len(posed)), key=lambda i: -posed[i][3][2])
    full = []
    for i in range(len(posed)):
        alone = np.zeros_like(ids)
        name, size, quat, loc, uv, cam = posed[i]
        _render_cuboid(img, alone, 1, uv, cam, quat, None)
        full.append(int(alone.sum()))
    for i in order:
        name, size, quat, loc, uv, cam = posed[i]
        textures = looks[i] or {f: _texture(rng) for f in FACES}
        _render_cuboid(img, ids, i + 1, uv, cam, quat, textures, light)
    records = []
    for i, (name, size, quat, loc, uv, cam) in enumerate(posed):
        seen = int((ids == i + 1).sum())
        records.append({
            "class": name, "name": "%s_%d" % (name, i),
            "visibility": round(seen / full[i], 4) if full[i] else 0.0,
            "location": [float(v) for v in loc],
            "quaternion_xyzw": [float(v) for v in quat],
            "projected_cuboid": [[float(a), float(b)] for a, b in uv],
            "cuboid_dimensions": [float(s) for s in size],
        })
    return img, records


def write_dataset(out, n, seed=0, width=640, height=480, object_name="cube", progress=True,
                  distance=DEFAULT_DISTANCE, fx=None, fy=None):
    """Write ``n`` PNG + json pairs into ``out`` (created). Returns ``out``."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    fx = fx or 0.9 * width
    fy = fy or fx
    K = intrinsics_matrix(fx, fy, width / 2.0, height / 2.0)
    camera = {"intrinsics": {"fx": fx, "fy": fy, "cx": width / 2.0, "cy": height / 2.0},
              "width": width, "height": height}
    for i in tqdm(range(n), desc="synth dope", disable=not progress, unit="img"):
        img, objects = render_sample(rng, width, height, object_name, K, distance)
        stem = os.path.join(out, "%06d" % i)
        cv2.imwrite(stem + ".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        with open(stem + ".json", "w") as fh:
            json.dump({"camera_data": camera, "objects": objects}, fh, indent=1)
    return out


# What only the mesh renderer does, with the value that means "not asked for".
MESH_ONLY = {"scale": 1.0, "instances": 1, "distractors": None, "max_distractors": 5,
             "backgrounds": None, "workers": None, "extras": False, "symmetry": None,
             "symmetry_id": None, "shard": None, "camera": None}


def main(args):
    """Job entry: --mesh renders your object (mesh_job); otherwise textured cuboids."""
    if args.mesh and args.cuboid:
        raise UserError("--mesh and --cuboid are two generators; pass one of them")
    if args.mesh:
        from pose_train.dope import mesh_job
        return mesh_job.main(args)
    asked = [k for k, v in MESH_ONLY.items() if getattr(args, k, v) != v]
    if asked:
        raise UserError("--%s: %s only to --mesh; the cuboid generator takes no such option"
                        % (", --".join(asked), "applies" if len(asked) == 1 else "apply"))
    make_folder(args.out, "--out")
    distance = parse_distance(args.distance or "%g,%g" % DEFAULT_DISTANCE)
    name = (args.object or "cube").lower()
    write_dataset(args.out, args.n, args.seed, args.width or DEFAULT_SIZE[0], args.height or DEFAULT_SIZE[1], name,
                  distance=distance, fx=args.fx, fy=args.fy)
    print("wrote %d images + json to %s (class %r, NViSII format, %g-%g m away)"
          % (args.n, args.out, name, distance[0], distance[1]))
    return 0
