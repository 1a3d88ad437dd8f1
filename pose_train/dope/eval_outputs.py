"""What eval dope writes for people: results.md and overlays of the worst objects."""
import os

import cv2
import numpy as np

from pose_train.files import atomic_write
from pose_train_py27 import image_files, overlay


def _fmt(value, spec):
    return "-" if value is None else spec % value


def results_markdown(summary, info):
    s = summary
    lines = ["# eval dope: %s" % info["object"], "",
             "weights `%s`, %d frames of %s%s; %s on %s, diameter %.1f cm; detections from %s."
             % (info["weights"], info["frames"], ", ".join(info["data"]),
                " (%d without the object: they count its false positives)" % info["negatives"]
                if info.get("negatives") else "", info["metric"],
                info["points"], 100 * s["diameter_m"], info["source"]), "",
             "| objects | detected | %s < 0.1 d | %s AUC 0-10 cm | median 2D error (px) | "
             "median translation (mm) | median rotation (deg) | false positives |"
             % (info["metric"], info["metric"]),
             "|---|---|---|---|---|---|---|---|",
             "| %d | %d (%.1f%%) | %.1f%% | %.3f | %s | %s | %s | %d |"
             % (s["objects"], s["detected"], 100 * s["detection_rate"],
                100 * s["add_below_0.1d"], s["add_auc_0_10cm"], _fmt(s["median_reproj_px"], "%.2f"),
                _fmt(s["median_trans_mm"], "%.1f"), _fmt(s["median_rot_deg"], "%.2f"),
                s["false_positives"]), "",
             "A detection counts for an object when its %s; any other posed detection is a "
             "false positive." % s.get("match", "projected centroid is the nearest"), ""]
    for key, lead in (("with_partial", "DOPE's node publishes only complete cuboids (all 9 "
                                        "points), as scored above. Posed from 4-8 points too "
                                        "(--partial):"),
                      ("node_only", "Scored with --partial: poses from 4-8 points count, though "
                                    "DOPE's node publishes only complete cuboids. As the node:")):
        if s.get(key):
            p = s[key]
            lines += ["%s %d detected (%.1f%%), %s < 0.1 d %.1f%%, AUC %.3f." % (
                lead, p["detected"], 100 * p["detection_rate"], info["metric"],
                100 * p["add_below_0.1d"], p["add_auc_0_10cm"]), ""]
    if info.get("skipped"):
        lines += ["%d frame(s) skipped (--skip_bad), not scored:" % len(info["skipped"]), ""]
        lines += ["- %s" % line for line in info["skipped"]] + [""]
    return "\n".join(lines)


def overall(summaries):
    """One summary over several objects' summaries: counts summed, rates weighted by objects
    (so each equals the rate over every object pooled: ADD < 0.1 d on each object's own d)."""
    objects = sum(s["objects"] for s in summaries)

    def pooled(key):
        return sum(s[key] * s["objects"] for s in summaries) / max(1, objects)
    return {"objects": objects, "detected": sum(s["detected"] for s in summaries),
            "detection_rate": pooled("detection_rate"), "add_below_0.1d": pooled("add_below_0.1d"),
            "add_auc_0_10cm": pooled("add_auc_0_10cm"),
            "false_positives": sum(s["false_positives"] for s in summaries)}


def overall_markdown(summaries, total, metric):
    """The table of several objects, one row each and one for all; per-object details follow."""
    lines = ["# eval dope: %d objects" % len(summaries), "",
             "| object | objects | detected | %s < 0.1 d | %s AUC 0-10 cm | median 2D error (px) "
             "| false positives |" % (metric, metric), "|---|---|---|---|---|---|---|"]
    for name, s in list(summaries.items()) + [("all", total)]:
        lines.append("| %s | %d | %d (%.1f%%) | %.1f%% | %.3f | %s | %d |" % (
            name, s["objects"], s["detected"], 100 * s["detection_rate"], 100 * s["add_below_0.1d"],
            s["add_auc_0_10cm"], _fmt(s.get("median_reproj_px"), "%.2f"), s["false_positives"]))
    return "\n".join(lines + ["", "Each object's own results.md, results.json and worst/ are in "
                               "the folder named after it.", ""])


def write_worst(outf, rows, count):
    """Overlays of the ``count`` worst objects (misses first, then the largest ADD)."""
    folder = os.path.join(outf, "worst")
    os.makedirs(folder, exist_ok=True)
    worst = sorted(rows, key=lambda r: (r["detected"] and "add_m" in r, -r.get("add_m", 0)))
    for rank, row in enumerate(worst[:count]):
        bgr = cv2.imread(row["image"], image_files.IMREAD_FLAGS)   # the pixels it was scored on
        rgb = bgr[:, :, ::-1].copy()
        gt = row["gt_points"]
        for i, j in ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4),
                     (1, 5), (2, 6), (3, 7)):   # ground truth in white under the estimate
            cv2.line(rgb, tuple(int(round(v)) for v in gt[i]), tuple(int(round(v)) for v in gt[j]),
                     (255, 255, 255), 1, cv2.LINE_AA)
        if "projected_cuboid" in row:
            overlay.draw_cuboid(rgb, row["projected_cuboid"])
            text = "ADD %.1f cm, 2D %.1f px" % (100 * row["add_m"], row["reproj_px"])
        else:
            text = "missed"
        overlay.caption(rgb, "%s: %s" % (os.path.basename(row["image"]), text))
        name = "%02d_%s.png" % (rank, os.path.splitext(os.path.basename(row["image"]))[0])
        ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
        atomic_write(os.path.join(folder, name), lambda f: f.write(data.tobytes()))
