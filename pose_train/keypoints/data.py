"""Reading a prepared keypoint folder (see prepare.py for its format) into device tensors."""
import glob
import json
import os

import numpy as np
import torch

from pose_train.errors import UserError
from pose_train.keypoints import mesh as meshlib
from pose_train.keypoints.prepare import FORMAT


def find_prepared(data, seq, kptype, kpnum=None):
    """The prepared folder for (seq, kptype[, kpnum]) under DATA, or DATA itself if it is one."""
    if os.path.isfile(os.path.join(data, "annotations.json")):
        return data
    pattern = "kp_%02d_%s_%s" % (seq, kptype, "*" if kpnum is None else kpnum)
    hits = sorted(p for p in glob.glob(os.path.join(data, pattern))
                  if os.path.isfile(os.path.join(p, "annotations.json")))
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise UserError("no prepared keypoints %s in %s; run `pose-train prepare keypoints --seq %d "
                        "--kptype %s --outf %s` first" % (pattern, data, seq, kptype, data))
    raise UserError("several prepared folders match in %s (%s); pass --nClasses to pick one"
                    % (data, ", ".join(os.path.basename(h) for h in hits)))


def load_prepared(folder):
    """(annotations dict, crops as a read-only memory map)."""
    path = os.path.join(folder, "annotations.json")
    try:
        with open(path) as f:
            ann = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError("cannot read %s (%s); re-run prepare keypoints" % (path, err))
    if ann.get("format") != FORMAT:
        raise UserError("%s is not a pose-train keypoint annotation file" % path)
    check_labels(ann, path)
    crops = np.load(os.path.join(folder, "crops.npy"), mmap_mode="r")
    if len(crops) != len(ann["frames"]):
        raise UserError("%s: crops.npy has %d frames, annotations %d; re-run prepare keypoints"
                        % (folder, len(crops), len(ann["frames"])))
    return ann, crops


def check_labels(ann, path):
    """Refuse labels a network would learn NaN or nothing from, naming the frame: non-finite
    keypoints, boxes, poses or crops, or a set where no keypoint is visible at all."""
    visible = 0
    for i, fr in enumerate(ann["frames"]):
        try:
            numbers = np.concatenate([np.ravel(np.asarray(fr[key], np.float64)) for key in ("kp2d", "bbox", "R", "t")]
                                     + [np.asarray(fr["crop"]["origin"], np.float64), [fr["crop"]["scale"]]])
            vis = np.asarray(fr["vis"], np.int64)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError("%s: frame %d (%s) is incomplete (%s); re-run prepare keypoints"
                            % (path, i, fr.get("rgb", "?") if isinstance(fr, dict) else "?", err))
        if not np.isfinite(numbers).all():
            raise UserError("%s: frame %d (%s) has a non-finite keypoint, box, pose or crop (NaN or inf); "
                            "check that frame's pose in the source data, then re-run prepare keypoints"
                            % (path, i, fr.get("rgb", "?")))
        visible += int((vis > 0).sum())
    if ann["frames"] and not visible:
        raise UserError("%s: no keypoint is visible in any of its %d frames, so there is nothing to learn; "
                        "check the poses and the model's units, then re-run prepare keypoints"
                        % (path, len(ann["frames"])))


def load_model_mesh(folder):
    return meshlib.read_ply(os.path.join(folder, "model.ply"))


def frame_arrays(frames):
    """Boxes (xyxy), keypoints and visibility in crop pixels, as numpy arrays."""
    boxes, kps, vis = [], [], []
    for fr in frames:
        o, s = np.array(fr["crop"]["origin"]), fr["crop"]["scale"]
        x, y, w, h = fr["bbox"]
        boxes.append([s * (x - o[0]), s * (y - o[1]), s * (x + w - o[0]), s * (y + h - o[1])])
        kps.append(s * (np.array(fr["kp2d"]) - o))
        vis.append(fr["vis"])
    return (np.array(boxes, np.float32), np.array(kps, np.float32), np.array(vis, np.int64))


def split_indices(ann, split):
    idx = [i for i, fr in enumerate(ann["frames"]) if fr["split"] == split]
    if not idx and split == "test":
        # A folder prepared with --test_ratio 0: validate on the training frames, say so.
        print("note: no test frames; validating on the training frames")
        idx = list(range(len(ann["frames"])))
    return idx


def to_device(ann, crops, idx, device):
    """The training tensors for frames idx: crops uint8 (N,S,S,3), boxes, kps, vis."""
    frames = [ann["frames"][i] for i in idx]
    boxes, kps, vis = frame_arrays(frames)
    return {"crops": torch.from_numpy(np.ascontiguousarray(crops[idx])).to(device),
            "boxes": torch.from_numpy(boxes).to(device), "kps": torch.from_numpy(kps).to(device),
            "vis": torch.from_numpy(vis).to(device), "index": list(idx)}
