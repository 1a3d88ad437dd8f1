"""`pose-train prepare keypoints`: designate keypoints on one LINEMOD object and annotate
every frame, into one self-contained folder that training and evaluation read.

OUTF/kp_SS_KPTYPE_KPNUM/ (SS = two-digit --seq):

  annotations.json  {"format": "pose-train-keypoints", "version": 1, "seq", "kptype", "kpnum",
                     "layout": "bop"|"sixd", "data_root", "diameter" (mm), "symmetric",
                     "keypoints_3d": [[x,y,z] mm, model frame] * kpnum,
                     "crop_size": S, "context": C,
                     "frames": [{"id", "rgb" (path relative to data_root), "split": "train"|"test",
                                 "K" 3x3, "R" 3x3, "t" [mm], "bbox" [x,y,w,h] px,
                                 "kp2d" [[u,v]] px, "vis" [0|1|2],
                                 "crop": {"origin": [ox,oy], "scale": s}}]}
                    vis: 2 visible; 1 in the image but hidden (behind the object itself, by a
                    mesh ray cast, or outside mask_visib, i.e. behind another object);
                    0 outside the image. Off-surface keypoints (kptype corner) are never
                    self-occluded: they are virtual points.
  crops.npy         uint8 (N, S, S, 3) RGB: per frame, the square of side C*max(w,h) centred on
                    the box, resized to S. Frame pixel p maps to crop pixel s*(p - origin).
                    Augmentation and DPG then run on the GPU over these crops (no image decode
                    in the training loop), and the job needs only this folder.
  keypoints.ply     the keypoints as a point cloud;  model.ply  the object's mesh (for ADD)
  split.json        {"train": [frame ids], "test": [frame ids]}
"""
import json
import os
import re

import cv2
import numpy as np
from tqdm import tqdm

from pose_train.errors import UserError
from pose_train.files import atomic_write_json, make_folder
from pose_train.keypoints import designate as designation
from pose_train.keypoints import linemod
from pose_train.keypoints import mesh as meshlib

FORMAT = "pose-train-keypoints"


def prepared_dir(outf, seq, kptype, kpnum):
    return os.path.join(outf, "kp_%02d_%s_%d" % (seq, kptype, kpnum))


def _frame_id(word, path):
    """A frame id from a split line: 42, kp6d's 0042, or an image path such as
    LINEMOD/ape/JPEGImages/000042.jpg (YOLO-6D, singleshotpose, PVNet lists)."""
    stem = os.path.splitext(os.path.basename(word))[0]
    digits = re.findall(r"\d+", stem)
    if not digits:
        raise UserError("%s: %r names no frame number; lines are ids (42, 0042) or image paths "
                        "(LINEMOD/ape/JPEGImages/000042.jpg)" % (path, word))
    return int(digits[-1])


def read_split(path, ids, key="train"):
    """Frame ids from a split file: JSON {"train": [...], "test": [...]}, or one id or image
    path a line (BB8 training_range.txt, kp6d train.txt, YOLO-6D/PVNet train.txt, test.txt)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as err:
        raise UserError("cannot read split file %s (%s)" % (path, err))
    if text.lstrip().startswith("{"):
        try:
            chosen = set(int(i) for i in json.loads(text)[key])
        except (ValueError, KeyError, TypeError) as err:
            raise UserError("%s: a JSON split needs a %r list of frame ids (%s)" % (path, key, err))
    else:
        chosen = set(_frame_id(w, path) for w in text.split())
    unknown = chosen - set(ids)
    if unknown:
        raise UserError("split file %s names frames the sequence lacks: %s"
                        % (path, sorted(unknown)[:5]))
    return chosen


def _random_train(ids, fraction, seed):
    if not 0.0 < fraction <= 1.0:
        raise UserError("--split random:F takes the training fraction F in (0, 1], got %r"
                        % fraction)
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_train = int(round(fraction * len(ids)))
    return set(int(ids[i]) for i in perm[:n_train])


def choose_split(ids, split, test_ratio, seed, test_split=None):
    """{id: "train" | "test" | "unused"}. --split FILE or random:F picks the training frames,
    --test_split FILE the test frames (default: every other frame); neither given: a seeded
    random split holding out --test_ratio."""
    if split and str(split).lower().startswith("random:"):
        try:
            fraction = float(str(split).split(":", 1)[1])
        except ValueError:
            raise UserError("--split random:F takes a number F, got %r" % split)
        train = _random_train(ids, fraction, seed)
    elif split:
        train = read_split(split, ids)
    elif test_split:
        train = set(ids) - read_split(test_split, ids, "test")
    else:
        if not 0.0 <= test_ratio < 1.0:
            raise UserError("--test_ratio must be in [0, 1), got %r" % test_ratio)
        train = _random_train(ids, 1.0 - test_ratio, seed) if test_ratio else set(ids)
    test = read_split(test_split, ids, "test") if test_split else set(ids) - train
    both = train & test
    if both:
        raise UserError("%s and %s share %d frames (e.g. %s); a frame is either train or test"
                        % (split, test_split, len(both), sorted(both)[:3]))
    return {i: ("train" if i in train else "test" if i in test else "unused") for i in ids}


def frame_box(frame, model, width, height):
    """Box from the annotations, else from mask_visib, else the projected model, clipped."""
    if frame.bbox is not None:
        return list(frame.bbox)
    if frame.mask_visib is not None:
        ys, xs = np.nonzero(cv2.imread(frame.mask_visib, cv2.IMREAD_GRAYSCALE))
        if len(xs):
            return [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]
    uv, _ = meshlib.project(model["vertices"], frame.K, frame.R, frame.t)
    lo = np.clip(uv.min(0), 0, [width - 1, height - 1])
    hi = np.clip(uv.max(0), 0, [width - 1, height - 1])
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0] + 1), float(hi[1] - lo[1] + 1)]


def visibility(kp3d, frame, seq, uv, shape, on_surface):
    """0 outside the image, 1 hidden (self-occluded or outside mask_visib), 2 visible."""
    h, w = shape
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
    vis = np.where(inside, 2, 0)
    if on_surface:
        tol = max(1.0, 0.01 * seq.diameter)
        seen = meshlib.self_visible(kp3d, frame.K, frame.R, frame.t, seq.model, tol)
        vis[inside & ~seen] = 1
        if frame.mask_visib is not None:
            mask = cv2.imread(frame.mask_visib, cv2.IMREAD_GRAYSCALE) > 0
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # edge points
            px = np.clip(np.round(uv).astype(int), 0, [w - 1, h - 1])
            vis[(vis == 2) & ~mask[px[:, 1], px[:, 0]]] = 1
    return vis


def crop_frame(img, box, context, size):
    """Square context crop around the box, resized to size x size; returns (crop, origin, scale)."""
    x, y, w, h = box
    side = context * max(w, h, 1.0)
    origin = np.array([x + w / 2.0 - side / 2.0, y + h / 2.0 - side / 2.0])
    s = size / side
    M = np.array([[s, 0, -s * origin[0]], [0, s, -s * origin[1]]])
    crop = cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return crop, origin, s


def annotate(seq, kp3d, split_of, crops, args, on_surface):
    frames = []
    for n, frame in enumerate(tqdm(seq.frames, desc="annotate", unit="frame", leave=False)):
        img = cv2.imread(frame.rgb, cv2.IMREAD_COLOR)
        if img is None:
            raise UserError("cannot read image %s; the sequence is incomplete" % frame.rgb)
        uv, _ = meshlib.project(kp3d, frame.K, frame.R, frame.t)
        box = frame_box(frame, seq.model, img.shape[1], img.shape[0])
        vis = visibility(kp3d, frame, seq, uv, img.shape[:2], on_surface)
        crop, origin, s = crop_frame(img, box, args.context, args.crop_size)
        crops[n] = crop[:, :, ::-1]  # stored RGB: the network's channel order
        frames.append({"id": frame.id, "rgb": os.path.relpath(frame.rgb, seq.root),
                       "split": split_of[frame.id], "K": frame.K.tolist(), "R": frame.R.tolist(),
                       "t": frame.t.tolist(), "bbox": [float(v) for v in box],
                       "kp2d": uv.tolist(), "vis": vis.tolist(),
                       "crop": {"origin": origin.tolist(), "scale": float(s)}})
    return frames


def main(args):
    make_folder(args.outf)
    seq = linemod.load_sequence(args.data, args.seq, args.symmetric, args.min_visib)
    print("prepare keypoints: object %d uses %s (%s)" % (args.seq, "ADD-S" if seq.symmetric
                                                          else "ADD", seq.symmetry_rule))
    split_of = choose_split([f.id for f in seq.frames], args.split, args.test_ratio, args.seed,
                            args.test_split)
    seq.frames = [f for f in seq.frames if split_of[f.id] != "unused"]
    train_frames = [f for f in seq.frames if split_of[f.id] == "train"] or seq.frames
    if args.keypoints:
        kp3d = designation.read_given(args.keypoints)
        if len(kp3d) != args.kpnum:
            print("prepare keypoints: %s holds %d keypoints; --kpnum %d -> %d"
                  % (args.keypoints, len(kp3d), args.kpnum, len(kp3d)))
        args.kpnum, source = len(kp3d), os.path.abspath(args.keypoints)
    else:
        kp3d = designation.designate(args.kptype, args.kpnum, seq, train_frames, args.seed)
        source = "designated here (--kptype %s, --seed %d)" % (args.kptype, args.seed)
    out = prepared_dir(args.outf, args.seq, args.kptype, args.kpnum)
    os.makedirs(out, exist_ok=True)
    size = args.crop_size
    crops = np.lib.format.open_memmap(os.path.join(out, "crops.npy"), mode="w+", dtype=np.uint8,
                                      shape=(len(seq.frames), size, size, 3))
    frames = annotate(seq, kp3d, split_of, crops, args, designation.ON_SURFACE[args.kptype])
    crops.flush()
    del crops
    meshlib.write_ply(os.path.join(out, "keypoints.ply"), kp3d)
    meshlib.write_ply(os.path.join(out, "model.ply"), seq.model["vertices"], seq.model["faces"],
                      seq.model["colors"])
    with open(os.path.join(out, "split.json"), "w") as f:
        json.dump({s: [i for i in sorted(split_of) if split_of[i] == s] for s in ("train", "test")}, f)
    ann = {"format": FORMAT, "version": 1, "seq": args.seq, "kptype": args.kptype,
           "kpnum": args.kpnum, "layout": seq.layout, "data_root": os.path.abspath(seq.root),
           "diameter": seq.diameter, "symmetric": bool(seq.symmetric),
           "symmetry_rule": seq.symmetry_rule,
           "keypoints_3d": kp3d.tolist(), "keypoints_source": source,
           "crop_size": size, "context": args.context,
           "frames": frames}
    # Written last: its presence marks a complete folder.
    atomic_write_json(os.path.join(out, "annotations.json"), ann, indent=None, sort_keys=False)
    n_train = sum(1 for v in split_of.values() if v == "train")
    vis = np.array([fr["vis"] for fr in frames])
    print("prepare keypoints: %d frames (%d train, %d test), %d %s keypoints, %.0f%% visible -> %s"
          % (len(frames), n_train, len(frames) - n_train, args.kpnum, args.kptype,
             100.0 * np.mean(vis == 2), out))
    return 0
