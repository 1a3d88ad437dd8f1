# -*- coding: utf-8 -*-
"""The flags of the jobs both runtimes run, declared once as plain data.

pose_train.jobs turns each entry into a Field (the host CLI, --help, checks, mounts);
pose_train_py27.__main__ builds the legacy image's own parser from the same entries. No
imports: the host launcher reads this without torch.
"""

RUNTIME = dict(name="runtime", type="str", default="modern", choices=("modern", "melodic"),
               help="modern image, or the ROS Melodic one (Python 2.7 + torch 1.4) as robots "
                    "run it")

_CAMERA = (
    dict(name="camera", type="path", role="in",
         help="camera: a DOPE/NViSII frame JSON, an NDDS _camera_settings.json or a ROS "
              "camera_info.yaml (default: each frame's own JSON beside it)"),
    dict(name="fx", type="float", positive=True, help="focal length x in pixels (with --fy "
                                                     "--cx --cy, instead of --camera)"),
    dict(name="fy", type="float", positive=True, help="focal length y in pixels"),
    dict(name="cx", type="float", help="principal point x in pixels"),
    dict(name="cy", type="float", help="principal point y in pixels"),
    dict(name="unrectified", type="bool", default=False,
         help="frames are not rectified: use the camera_info YAML's K and its distortion D in "
              "PnP, as DOPE's node does with input_is_rectified: false (default: its P, as the "
              "node's default input_is_rectified: true)"),
)

DECODE = (
    dict(name="dimensions", type="str",
         help="the cuboid's x,y,z in cm as DOPE's node takes them, or an NDDS "
              "_object_settings.json naming each object (default: the weights' sidecar)"),
    dict(name="object", type="str", help="object name in the outputs (default: the sidecar's); "
                                        "with several weights, NAME1,NAME2,... in their order"),
    dict(name="normalize", type="str", choices=("ros", "imagenet"),
         help="input normalisation (default: the one the weights' sidecar records, else ros)"),
    dict(name="sigma", type="float", low=0,
         help="peak smoothing in map cells (default: the sidecar's, for the trained crop size; "
              "the node's config says 3, right for 400 px crops)"),
    dict(name="thresh_map", type="float", low=0, help="belief peak threshold (default 0.01)"),
    dict(name="thresh_points", type="float", low=0, help="keypoint score threshold "
                                                        "(default 0.1)"),
    dict(name="thresh_angle", type="float", positive=True, help="affinity angle threshold "
                                                               "(default 0.5)"),
    dict(name="partial", type="bool", default=False,
         help="also pose objects with 4-8 of their 9 points (labelled partial); DOPE's node "
              "skips them, so by default they get no pose, as on the robot"),
    dict(name="downscale_height", type="int", low=8,
         help="frames taller than this are scaled down first, as the node does (default: "
              "the sidecar's, for the trained scale; else the node's 500)"),
)

# 40 MP: an 8K frame (33 MP) fits. 2^30 is OpenCV's own ceiling (CV_IO_MAX_IMAGE_PIXELS).
MAX_PIXELS = dict(name="max_pixels", type="int", default=40 * 1000 * 1000, low=1, high=1 << 30,
                  help="refuse images with more pixels than this (read from the file's header, "
                       "before decoding)")

INFER_DOPE = (
    dict(name="weights", type="path", role="in", positional=True, beside=True, many=True,
         help="DOPE weights: net_epoch_XX.pth (or any DOPE .pth the node loads); several, one "
              "per object, run over every frame as the node runs them"),
    dict(name="images", type="path", role="in", many=True,
         help="an image, a folder of images (searched recursively) or a video"),
    dict(name="outf", type="path", default="infer", role="out",
         help="output folder: detections.json, one JSON and one overlay PNG per frame"),
) + _CAMERA + DECODE + (
    dict(name="belief_grid", type="bool", default=False,
         help="also write the 9 belief maps of each frame as a PNG grid"),
    MAX_PIXELS,
    RUNTIME,
)
