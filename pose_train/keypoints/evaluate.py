"""`pose-train eval keypoints`: heatmaps -> keypoints -> PnP -> pose metrics on the test split.

Per test frame: crop with a box (ground truth jittered by DPG's edge/patch branch by
default, --boxes gt for exact boxes, or --detections FILE), heatmap argmax with
sub-pixel refinement, keypoints back in image pixels, cv2.solvePnPRansac on the top-k
most confident keypoints, then

  PCK      visible keypoints within pck_alpha * the longer side of the ground-truth box
  2D proj  mean reprojection distance of the model's vertices < 5 px
  ADD      mean distance of the model's vertices < 0.1 * diameter (ADD-S, the closest
           point, for symmetric objects: LINEMOD's eggbox and glue)

Detections are mapped into the stored context crops (C x the ground-truth box, see
prepare.py): a detection far outside that square sees black padding there. That is
exact for detections that overlap the object, which is what PnP can use anyway.

A frame whose prediction fails (no detection, PnP finds no pose) counts as a miss; kp6d
dropped such frames from the denominator. Writes OUTF/results.json (one entry per
object, merged across runs), OUTF/results.md (the per-object table),
OUTF/eval_SS_KPTYPE_K/frames.json and overlay.png (green true, red predicted keypoints).
"""
import json
import math
import os

import cv2
import numpy as np
import torch

from pose_train.errors import UserError
from pose_train.files import make_folder, read_sidecar
from pose_train.keypoints import data as kpdata
from pose_train.keypoints import dpg, heatmaps, metrics, steps, transforms
from pose_train.keypoints import model as kpmodel
from pose_train.training import checkpoint_io as ckpt
from pose_train_py27.keys import strip_prefix


def load_network(path, device):
    """FastPose with --arch and keypoint count read from the weights themselves."""
    sd = strip_prefix(ckpt.weights_of(ckpt.load_file(path), path))
    if "conv_out.weight" not in sd:
        raise UserError("%s is not a FastPose checkpoint (no conv_out.weight)" % path)
    arch = "resnet101" if any(k.startswith("preact.layer3.22.") for k in sd) else "resnet50"
    net = kpmodel.build(int(sd["conv_out.weight"].shape[0]), arch)
    kpmodel.load_weights(net, path)
    return net.to(device).eval(), arch


def read_detections(path):
    """{frame id: [x, y, w, h]} from {"id": box} or [{"image_id"|"frame_id", "bbox", "score"}]."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError("cannot read detections %s (%s)" % (path, err))
    if isinstance(raw, dict):
        return {int(k): [float(v) for v in box] for k, box in raw.items()}
    best = {}
    for det in raw:
        key = int(det.get("frame_id", det.get("image_id", -1)))
        if key not in best or det.get("score", 0) > best[key].get("score", 0):
            best[key] = det
    return {k: [float(v) for v in d["bbox"]] for k, d in best.items()}


def eval_boxes(args, ann, data, idx):
    """Boxes in crop pixels (B,4 xyxy) and which frames have one."""
    boxes = data["boxes"].clone()
    have = torch.ones(len(idx), dtype=torch.bool)
    if args.detections:
        dets = read_detections(args.detections)
        for n, i in enumerate(idx):
            fr = ann["frames"][i]
            if fr["id"] not in dets:
                have[n] = False
                continue
            o, s = fr["crop"]["origin"], fr["crop"]["scale"]
            x, y, w, h = dets[fr["id"]]
            boxes[n] = torch.tensor([s * (x - o[0]), s * (y - o[1]), s * (x + w - o[0]), s * (y + h - o[1])])
    elif args.boxes == "jitter":
        gen = torch.Generator(device=boxes.device)
        gen.manual_seed(args.seed)
        size = data["crops"].shape[1]
        boxes = dpg.clamp_boxes(dpg.jitter(boxes, gen)[0], boxes, size, size)
    elif args.boxes != "gt":
        raise UserError("--boxes must be jitter|gt, got %r" % args.boxes)
    return boxes, have


@torch.no_grad()
def predict(net, data, boxes, input_hw, device, batch=32):
    """Keypoints in crop pixels (N,K,2) and their confidences (N,K)."""
    kps, confs = [], []
    for s in range(0, len(boxes), batch):
        idx = torch.arange(s, min(s + batch, len(boxes)), device=device)
        inputs, _, _, affine = transforms.make_batch(data, idx, input_hw, 1.0, boxes=boxes[idx])
        with steps.autocast(device, "bf16"):
            out = net(inputs)
        heat, conf = heatmaps.decode(out.float())
        kps.append(transforms.apply_points(affine, heatmaps.from_heat(heat)))
        confs.append(conf)
    return torch.cat(kps).cpu().numpy(), torch.cat(confs).cpu().numpy()


def solve_pose(kp3d, kp2d, conf, K, topk):
    """(R, t) from the top-k confident keypoints, or None when PnP fails."""
    order = np.argsort(-conf)[:topk]
    if len(order) < 4:
        return None
    K = np.asarray(K, np.float64)
    try:
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            kp3d[order].astype(np.float64), kp2d[order].astype(np.float64), K, None,
            reprojectionError=8.0, iterationsCount=200, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inliers is None or len(inliers) < 4:
            return None
        inl = order[inliers[:, 0]]
        ok, rvec, tvec = cv2.solvePnP(kp3d[inl].astype(np.float64), kp2d[inl].astype(np.float64), K,
                                      None, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    except cv2.error:
        # Degenerate keypoints (all on one spot, non-finite) make OpenCV throw: a failed frame.
        return None
    if not ok or not np.all(np.isfinite(tvec)):
        return None
    return cv2.Rodrigues(rvec)[0], tvec.reshape(3)


def evaluate_frames(args, ann, crops, mesh, net, device):
    idx = kpdata.split_indices(ann, "test")
    data = kpdata.to_device(ann, crops, idx, device)
    boxes, have = eval_boxes(args, ann, data, idx)
    kp_crop, conf = predict(net, data, boxes, (args.input_res_h, args.input_res_w), device)
    kp3d = np.array(ann["keypoints_3d"])
    verts = np.asarray(mesh["vertices"], np.float64)   # every point: ADD(-S) is exact
    topk = args.topk or max(4, math.ceil(0.75 * ann["kpnum"]))
    rows = []
    for n, i in enumerate(idx):
        fr = ann["frames"][i]
        kp2d = kp_crop[n] / fr["crop"]["scale"] + np.array(fr["crop"]["origin"])
        pose = solve_pose(kp3d, kp2d, conf[n], fr["K"], topk) if have[n] else None
        row = metrics.frame_metrics(fr, kp2d if have[n] else None, pose, verts, ann, args.pck_alpha)
        row["kp_pred"] = kp2d.tolist()
        rows.append(row)
    return rows, idx


def input_size(args):
    """--inputResH/W, else the size in the weights' json sidecar, else kp6d's 320x256."""
    if args.input_res_h and args.input_res_w:
        return args.input_res_h, args.input_res_w
    hw = read_sidecar(args.model).get("input_hw")
    if hw:
        return int(hw[0]), int(hw[1])
    return 320, 256


def main(args):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.input_res_h, args.input_res_w = input_size(args)
    net, arch = load_network(args.model, device)
    kpnum = net.conv_out.out_channels
    folder = kpdata.find_prepared(args.data, args.seq, args.kptype, kpnum)
    ann, crops = kpdata.load_prepared(folder)
    rows, idx = evaluate_frames(args, ann, crops, kpdata.load_model_mesh(folder), net, device)
    summary = metrics.summarize(rows, ann, arch, args)
    out = make_folder(os.path.join(args.outf, "eval_%02d_%s_%d" % (ann["seq"], ann["kptype"], kpnum)))
    with open(os.path.join(out, "frames.json"), "w") as f:
        json.dump(rows, f)
    metrics.write_overlay(os.path.join(out, "overlay.png"), crops, ann, idx, rows)
    table = metrics.merge_results(args.outf, summary)
    print(table)
    print("object %02d scored with %s (%s)" % (ann["seq"], summary["metric"], summary["symmetry_rule"]))
    return 0
