"""`pose-train synth linemod`: a small synthetic LINEMOD sequence in the BOP layout.

The object is a box with a random colour per surface tile (so SIFT finds corners and
no two views look alike), rendered by mesh.rasterize at random poses over random
clutter, sometimes partly covered by an occluder. Poses, intrinsics, masks and boxes
are exact, so every later stage (prepare, train, eval) can be tested without a
download. Output:

    OUT/camera.json  OUT/models/obj_XXXXXX.ply  OUT/models/models_info.json
    OUT/test/XXXXXX/{rgb,depth,mask,mask_visib}/  scene_gt.json scene_camera.json scene_gt_info.json

With --others (more objects per frame, an LM-O-like set) the scenes need not be numbered after
the object (--scene, --scenes), the object is missing from every fourth frame and appears
twice in every third, and the objects hide each other (mask vs mask_visib, visib_fract).
"""
import json
import os

import cv2
import numpy as np

from pose_train.files import make_folder
from pose_train.keypoints import mesh as meshlib

# LINEMOD's Kinect intrinsics at 640x480; scaled for other image sizes.
LINEMOD_K = np.array([[572.4114, 0.0, 325.2611], [0.0, 573.57043, 242.04899], [0.0, 0.0, 1.0]])
BOX_SIZE_MM = (90.0, 64.0, 48.0)
DEPTH_SCALE = 1.0   # BOP: depth PNG value x depth_scale = mm
TILES = 4


def make_object(rng, size=BOX_SIZE_MM, tiles=TILES):
    """Box mesh centred at the origin; each tile has its own 4 vertices so its colour is flat."""
    half = np.asarray(size) / 2.0
    verts, faces, colors = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u_ax, v_ax = [a for a in range(3) if a != axis]
            for i in range(tiles):
                for j in range(tiles):
                    color = rng.integers(20, 236, 3)
                    base = len(verts)
                    for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                        p = np.zeros(3)
                        p[axis] = sign * half[axis]
                        p[u_ax] = -half[u_ax] + 2 * half[u_ax] * (i + du) / tiles
                        p[v_ax] = -half[v_ax] + 2 * half[v_ax] * (j + dv) / tiles
                        verts.append(p)
                        colors.append(color)
                    faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    return {"vertices": np.array(verts), "faces": np.array(faces, np.int64),
            "colors": np.array(colors, np.uint8)}


def random_rotation(rng):
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def random_pose(rng, K, width, height):
    """Rotation uniform on SO(3); the centre projects inside the middle 60% of the image."""
    z = rng.uniform(450.0, 750.0)
    u = rng.uniform(0.2, 0.8) * width
    v = rng.uniform(0.2, 0.8) * height
    t = z * np.linalg.inv(K) @ np.array([u, v, 1.0])
    return random_rotation(rng), t


def random_background(rng, width, height):
    small = rng.integers(0, 255, (6, 8, 3)).astype(np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        color = [int(c) for c in rng.integers(0, 255, 3)]
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(5, width // 4)), int(rng.integers(5, height // 4))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(img, (x, y), max(2, w // 2), color, -1)
    return img


def face_shading(obj, R):
    """Lambert term with the light at the camera: faces seen edge-on get darker."""
    tri = obj["vertices"][obj["faces"]] @ R.T
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    view = tri.mean(1)
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    return 0.35 + 0.65 * np.abs(np.sum(n * view, axis=1))


def bbox_of(mask):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [-1, -1, -1, -1]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def render_frame(rng, obj, K, width, height, occlude_p=0.3):
    """One frame: (rgb uint8 BGR, mask, mask_visib, R, t, depth in mm with 0 off the object)."""
    R, t = random_pose(rng, K, width, height)
    rgb, depth = meshlib.rasterize(obj, K, R, t, width, height, shade=face_shading(obj, R))
    mask = depth > 0
    img = random_background(rng, width, height)
    img[mask] = np.clip(rgb[mask][:, ::-1], 0, 255).astype(np.uint8)   # rgb -> OpenCV BGR
    visib = mask.copy()
    x, y, w, h = bbox_of(mask)
    if w > 0 and rng.random() < occlude_p:
        # An occluder over one side of the box: the keypoints under it are occluded.
        ow, oh = int(w * rng.uniform(0.3, 0.6)), int(h * rng.uniform(0.3, 0.6))
        ox = x + int(rng.integers(0, max(1, w - ow)))
        oy = y + int(rng.integers(0, max(1, h - oh)))
        img[oy:oy + oh, ox:ox + ow] = rng.integers(0, 255, 3).astype(np.uint8)
        visib[oy:oy + oh, ox:ox + ow] = False
    noise = rng.normal(0.0, 3.0, img.shape)
    img = np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return img, mask, visib, R, t, np.where(mask, depth, 0.0)


def depth_png(depth_mm, depth_scale=DEPTH_SCALE):
    """BOP's depth image: uint16, value x depth_scale = millimetres, 0 = no depth."""
    return np.clip(np.round(depth_mm / depth_scale), 0, 65535).astype(np.uint16)


def _dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def write_models(out, objects):
    """models/obj_XXXXXX.ply per object and one models_info.json ({id: mesh})."""
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    info = {}
    for seq, obj in sorted(objects.items()):
        meshlib.write_ply(os.path.join(out, "models", "obj_%06d.ply" % seq), obj["vertices"],
                          obj["faces"], obj["colors"])
        lo, hi = obj["vertices"].min(0), obj["vertices"].max(0)
        info[str(seq)] = {"diameter": meshlib.diameter(obj["vertices"]),
                          "min_x": lo[0], "min_y": lo[1], "min_z": lo[2],
                          "size_x": hi[0] - lo[0], "size_y": hi[1] - lo[1], "size_z": hi[2] - lo[2]}
    _dump(os.path.join(out, "models", "models_info.json"), info)


def render_objects(rng, objects, ids, K, width, height):
    """Several objects in one frame, hiding each other: (BGR image, depth mm, [(obj_id, R, t,
    mask, mask_visib)])."""
    img = random_background(rng, width, height)
    zbuf = np.full((height, width), np.inf)
    drawn = []
    for obj_id in ids:
        R, t = random_pose(rng, K, width, height)
        rgb, depth = meshlib.rasterize(objects[obj_id], K, R, t, width, height,
                                       shade=face_shading(objects[obj_id], R))
        mask = depth > 0
        front = mask & (depth < zbuf)
        img[front] = np.clip(rgb[front][:, ::-1], 0, 255).astype(np.uint8)
        zbuf[front] = depth[front]
        drawn.append((obj_id, R, t, mask, depth))
    instances = [(obj_id, R, t, mask, mask & (depth <= zbuf)) for obj_id, R, t, mask, depth in drawn]
    noise = rng.normal(0.0, 3.0, img.shape)
    img = np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return img, np.where(np.isfinite(zbuf), zbuf, 0.0), instances


def frame_objects(seq, others, i):
    """Which objects frame i shows: the object (absent every 4th frame, twice every 3rd)."""
    ids = ([seq] if i % 4 != 3 else []) + list(others)
    return ids + ([seq] if i % 3 == 2 else [])


def _info(mask, visib):
    n_all, n_vis = int(mask.sum()), int(visib.sum())
    return {"bbox_obj": bbox_of(mask), "bbox_visib": bbox_of(visib), "px_count_all": n_all,
            "px_count_valid": n_all, "px_count_visib": n_vis, "visib_fract": n_vis / max(n_all, 1)}


def _write_frame(scene, i, img, depth, instances, K, tables):
    gt, cams, infos = tables
    cv2.imwrite(os.path.join(scene, "rgb", "%06d.png" % i), img)
    cv2.imwrite(os.path.join(scene, "depth", "%06d.png" % i), depth_png(depth))
    gt[str(i)], infos[str(i)] = [], []
    for k, (obj_id, R, t, mask, visib) in enumerate(instances):
        cv2.imwrite(os.path.join(scene, "mask", "%06d_%06d.png" % (i, k)), mask.astype(np.uint8) * 255)
        cv2.imwrite(os.path.join(scene, "mask_visib", "%06d_%06d.png" % (i, k)),
                    visib.astype(np.uint8) * 255)
        gt[str(i)].append({"cam_R_m2c": R.reshape(-1).tolist(), "cam_t_m2c": t.tolist(),
                           "obj_id": obj_id})
        infos[str(i)].append(_info(mask, visib))
    cams[str(i)] = {"cam_K": K.reshape(-1).tolist(), "depth_scale": DEPTH_SCALE}


def main(args):
    make_folder(args.out, "--out")
    rng = np.random.default_rng(args.seed)
    width, height = getattr(args, "width", 640), getattr(args, "height", 480)
    K = LINEMOD_K.copy()
    K[0] *= width / 640.0
    K[1] *= height / 480.0
    others = [int(v) for v in str(getattr(args, "others", "") or "").split(",") if v.strip()]
    objects = {args.seq: make_object(rng)}
    for obj_id in others:
        objects[obj_id] = make_object(rng, size=tuple(rng.uniform(40.0, 100.0, 3)))
    write_models(args.out, objects)
    _dump(os.path.join(args.out, "camera.json"), {
        "cx": K[0, 2], "cy": K[1, 2], "fx": K[0, 0], "fy": K[1, 1], "depth_scale": DEPTH_SCALE,
        "width": width, "height": height})
    first = args.seq if getattr(args, "scene", None) is None else args.scene
    n_scenes = getattr(args, "scenes", 1) or 1
    for j in range(n_scenes):
        scene = os.path.join(args.out, "test", "%06d" % (first + j))
        for sub in ("rgb", "depth", "mask", "mask_visib"):
            os.makedirs(os.path.join(scene, sub), exist_ok=True)
        tables = ({}, {}, {})
        for i in range(args.n):
            if others:
                img, depth, instances = render_objects(rng, objects, frame_objects(
                    args.seq, others, i), K, width, height)
            else:
                img, mask, visib, R, t, depth = render_frame(rng, objects[args.seq], K, width, height)
                instances = [(args.seq, R, t, mask, visib)]
            _write_frame(scene, i, img, depth, instances, K, tables)
        for name, table in zip(("scene_gt.json", "scene_camera.json", "scene_gt_info.json"), tables):
            _dump(os.path.join(scene, name), table)
        print("synth linemod: %d frames of object %d%s in %s" % (
            args.n, args.seq, " with objects %s" % others if others else "", scene))
    return 0
