"""Pictures of what net_best.pth finds in held-out frames, written when `train dope` ends.

A figure like "detected 60%" is believed once the cuboids are seen on the object. Each picture
is what `infer dope` draws for the frame (the node's decode, the weights' own settings: the
cuboid of each pose, white circles where the decode found belief peaks), with the annotated
keypoints as green circles, in OUTF/heldout/. Small frames are drawn enlarged, so the lines and
the caption stay legible.
"""
import argparse
import os

import cv2

from pose_train_py27 import dope_infer, dope_networks, infer_output, overlay, sidecar
from pose_train_py27.dope_io import InputError, make_camera
from pose_train_py27.image_files import decode_checked

FOLDER = "heldout"
TRUTH = (0, 255, 0)
LEGIBLE_WIDTH = 480      # pixels a picture is drawn at, at least (whole multiples of the frame)


def write(weights, samples, outf, device, count=4):
    """Overlays of the first ``count`` held-out frames with the object; their paths."""
    meta = sidecar.read(weights)
    network = {"net": dope_networks.load_network(weights, device).eval(), "object": meta.get("object"),
               "dimensions_cm": meta["dimensions_cm"], "color": overlay.color_of(0),
               "normalization": sidecar.normalization_of(meta, None, sidecar.path_of(weights)),
               "settings": dope_networks.settings_for(argparse.Namespace(), meta)}
    folder = os.path.join(outf, FOLDER)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for s in [s for s in samples if len(s.points) and s.intrinsics][:count]:
        try:
            rgb = decode_checked(s.image)[:, :, ::-1].copy()
        except InputError:
            continue          # damaged since the scan: validation said so already
        cam = make_camera(source=s.image, **s.intrinsics)
        detections = dope_infer.infer_networks([network], device, rgb, cam)[0]
        f = max(1, -(-LEGIBLE_WIDTH // rgb.shape[1]))     # ceil
        image = infer_output.draw_frame(_enlarged(rgb, f), _scaled_camera(cam, f), [network],
                                      [_scaled_detection(d, f) for d in detections])
        for points in s.points:
            overlay.draw_points(image, [_scaled(p, f) for p in points.tolist()], 1, TRUTH)
        path = os.path.join(folder, os.path.splitext(os.path.basename(s.image))[0] + ".png")
        infer_output.write_png(path, image)
        paths.append(path)
    return paths


def _scaled(point, f):
    """A pixel position in a frame enlarged f times (pixel centres stay centres)."""
    return None if point is None else [(v + 0.5) * f - 0.5 for v in point]


def _enlarged(rgb, f):
    return rgb if f == 1 else cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR)


def _scaled_camera(cam, f):
    return dict(cam, fx=cam["fx"] * f, fy=cam["fy"] * f, cx=(cam["cx"] + 0.5) * f - 0.5,
                cy=(cam["cy"] + 0.5) * f - 0.5)


def _scaled_detection(d, f):
    cuboid = d["projected_cuboid"]
    return dict(d, points_found=[_scaled(p, f) for p in d["points_found"]],
                projected_cuboid=None if cuboid is None else [_scaled(p, f) for p in cuboid])
