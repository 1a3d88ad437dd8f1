"""Pictures of what net_best.pth finds in held-out frames, written when `train dope` ends.

A figure like "detected 60%" is believed once the cuboids are seen on the object. Each picture
is what `infer dope` draws for the frame (the node's decode, the weights' own settings), with
the annotated keypoints as green dots beside it, in OUTF/heldout/.
"""
import argparse
import os

from pose_train_py27 import dope_infer, dope_networks, overlay, sidecar
from pose_train_py27.dope_io import InputError, make_camera
from pose_train_py27.image_files import decode_checked

FOLDER = "heldout"
TRUTH = (0, 255, 0)


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
        image = dope_infer.draw_frame(rgb, cam, [network], detections)
        for points in s.points:
            overlay.draw_points(image, points.tolist(), 1, TRUTH)
        path = os.path.join(folder, os.path.splitext(os.path.basename(s.image))[0] + ".png")
        dope_infer.write_png(path, image)
        paths.append(path)
    return paths
