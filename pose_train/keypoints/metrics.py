"""Pose metrics (ADD, ADD-S, 2D projection, PCK), the per-object table and the overlay PNG."""
import json
import os

import cv2
import numpy as np

from pose_train.keypoints import mesh as meshlib

PROJ_PX = 5.0       # 2D projection threshold (pixels)
ADD_FRACTION = 0.1  # ADD(-S) threshold as a fraction of the object's diameter


def add_error(verts, R, t, R_hat, t_hat, symmetric):
    """Mean 3D distance of every model point under the two poses (the model's units); for
    ADD-S the distance to the closest point of the other, found exactly with a KD-tree: a
    subsample would only find farther points, biasing ADD-S upwards."""
    a, b = meshlib.transform(verts, R, t), meshlib.transform(verts, R_hat, t_hat)
    if not symmetric:
        return float(np.linalg.norm(a - b, axis=1).mean())
    from scipy.spatial import cKDTree
    return float(cKDTree(b).query(a, k=1)[0].mean())


def proj_error(verts, K, R, t, R_hat, t_hat):
    uv, _ = meshlib.project(verts, K, R, t)
    uv_hat, _ = meshlib.project(verts, K, R_hat, t_hat)
    return float(np.linalg.norm(uv - uv_hat, axis=1).mean())


def frame_metrics(fr, kp2d, pose, verts, ann, pck_alpha):
    """One frame's errors and hits; kp2d None (no box) and pose None (PnP failed) are misses."""
    R, t, K = np.array(fr["R"]), np.array(fr["t"]), np.array(fr["K"])
    vis = np.array(fr["vis"]) == 2
    row = {"id": fr["id"], "failed": pose is None, "pck": 0.0, "kp_err_px": None,
           "add": None, "proj": None, "add_ok": False, "proj_ok": False}
    if kp2d is not None and vis.any():
        err = np.linalg.norm(kp2d - np.array(fr["kp2d"]), axis=1)[vis]
        row["pck"] = float(np.mean(err <= pck_alpha * max(fr["bbox"][2], fr["bbox"][3])))
        row["kp_err_px"] = float(err.mean())
    if pose is not None:
        row["add"] = add_error(verts, R, t, pose[0], pose[1], ann["symmetric"])
        row["proj"] = proj_error(verts, K, R, t, pose[0], pose[1])
        row["add_ok"] = row["add"] < ADD_FRACTION * ann["diameter"]
        row["proj_ok"] = row["proj"] < PROJ_PX
        row["R_pred"], row["t_pred"] = pose[0].tolist(), pose[1].tolist()
    return row


def summarize(rows, ann, arch, args):
    n = max(len(rows), 1)
    return {"seq": ann["seq"], "kptype": ann["kptype"], "kpnum": ann["kpnum"], "arch": arch,
            "model": os.path.abspath(args.model), "frames": len(rows),
            "boxes": "detections" if args.detections else args.boxes,
            "failures": sum(r["failed"] for r in rows),
            "pck": sum(r["pck"] for r in rows) / n,
            "proj_5px": sum(r["proj_ok"] for r in rows) / n,
            "add_0.1d": sum(r["add_ok"] for r in rows) / n,
            "metric": "ADD-S" if ann["symmetric"] else "ADD",
            "symmetry_rule": ann.get("symmetry_rule", "the prepared folder's symmetric flag")}


def table(results):
    lines = ["| object | kptype | K | frames | failures | PCK | 2D proj <5px | ADD(-S) <0.1d |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        r = results[key]
        lines.append("| %02d | %s | %d | %d | %d | %.1f%% | %.1f%% | %.1f%% (%s) |" % (
            r["seq"], r["kptype"], r["kpnum"], r["frames"], r["failures"], 100 * r["pck"],
            100 * r["proj_5px"], 100 * r["add_0.1d"], r["metric"]))
    rs = list(results.values())
    if len(rs) > 1:
        lines.append("| mean | | | %d | %d | %.1f%% | %.1f%% | %.1f%% |" % (
            sum(r["frames"] for r in rs), sum(r["failures"] for r in rs),
            100 * np.mean([r["pck"] for r in rs]), 100 * np.mean([r["proj_5px"] for r in rs]),
            100 * np.mean([r["add_0.1d"] for r in rs])))
    return "\n".join(lines)


def merge_results(outf, summary):
    """Add this object's row to OUTF/results.json and rewrite OUTF/results.md; returns the table."""
    path = os.path.join(outf, "results.json")
    results = {}
    if os.path.isfile(path):
        with open(path) as f:
            results = json.load(f)
    results["%02d_%s_%d" % (summary["seq"], summary["kptype"], summary["kpnum"])] = summary
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    text = table(results)
    with open(os.path.join(outf, "results.md"), "w") as f:
        f.write(text + "\n")
    return text


def write_overlay(path, crops, ann, idx, rows, count=16, tile=192):
    """Grid of test crops: true keypoints green, predicted red, joined by a line."""
    tiles = []
    for n, i in enumerate(idx[:count]):
        fr = ann["frames"][i]
        o, s = np.array(fr["crop"]["origin"]), fr["crop"]["scale"]
        img = np.ascontiguousarray(crops[i][:, :, ::-1])
        f = tile / img.shape[0]
        img = cv2.resize(img, (tile, tile))
        for true, pred in zip(np.array(fr["kp2d"]), np.array(rows[n]["kp_pred"])):
            a = tuple(int(round(v)) for v in (true - o) * s * f)
            b = tuple(int(round(v)) for v in (pred - o) * s * f)
            cv2.line(img, a, b, (0, 255, 255), 1)
            cv2.circle(img, a, 2, (0, 255, 0), -1)
            cv2.circle(img, b, 2, (0, 0, 255), -1)
        tiles.append(img)
    if not tiles:
        return
    cols = min(4, len(tiles))
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    grid = np.concatenate([np.concatenate(tiles[r:r + cols], 1) for r in range(0, len(tiles), cols)], 0)
    cv2.imwrite(path, grid)
