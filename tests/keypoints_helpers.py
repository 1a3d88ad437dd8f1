"""Shared pieces of the keypoint tests: small synthetic sequences and argument namespaces."""
import os

import numpy as np
import torch
import yaml

from pose_train.keypoints import mesh as meshlib
from pose_train.jobs import namespace
from pose_train.keypoints import prepare, synth

SMALL = dict(width=320, height=240)


def make_sequence(root, n=12, seq=1, seed=0):
    synth.main(namespace("synth-linemod", out=str(root), n=n, seq=seq, seed=seed, **SMALL))
    return str(root)


def prepare_args(data, outf, **kw):
    args = dict(seq=1, kptype="fps", kpnum=8, data=str(data), outf=str(outf), split=None,
                test_ratio=0.25, seed=0, crop_size=64, context=2.0)
    args.update(kw)
    return namespace("prepare-keypoints", **args)


def run_prepare(data, outf, **kw):
    args = prepare_args(data, outf, **kw)
    prepare.main(args)
    return prepare.prepared_dir(args.outf, args.seq, args.kptype, args.kpnum)


def train_args(data, outf, **kw):
    """The seed's spellings on purpose: namespace() takes every declared alias."""
    args = dict(kptype="fps", optMethod="adam", trainBatch=2, data=str(data), outf=str(outf),
                epochs=2, arch="resnet50", inputResH=64, inputResW=64, snapshot=0)
    args.update(kw)
    return namespace("train-keypoints", **args)


class TinyNet(torch.nn.Module):
    """Stand-in for FastPose where only the training machinery is under test (stride 4 too)."""

    def __init__(self, num_classes, architecture="resnet50"):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.BatchNorm2d(8),
                                        torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU())
        self.conv_out = torch.nn.Conv2d(16, num_classes, 3, 1, 1)

    def forward(self, x):
        return self.conv_out(self.body(x))


def write_sixd(bop_root, out, seq=1):
    """Re-write a synthetic BOP sequence in the SIXD hinterstoisser layout (ASCII PLY, YAML)."""
    import json
    import shutil
    scene = os.path.join(bop_root, "test", "%06d" % seq)
    gts = json.load(open(os.path.join(scene, "scene_gt.json")))
    cams = json.load(open(os.path.join(scene, "scene_camera.json")))
    infos = json.load(open(os.path.join(scene, "scene_gt_info.json")))
    target = os.path.join(out, "%02d" % seq)
    os.makedirs(os.path.join(target, "rgb"))
    os.makedirs(os.path.join(out, "models"))
    gt_yml, info_yml = {}, {}
    for key in gts:
        i = int(key)
        shutil.copy(os.path.join(scene, "rgb", "%06d.png" % i), os.path.join(target, "rgb", "%04d.png" % i))
        entry = dict(gts[key][0])
        entry["obj_bb"] = infos[key][0]["bbox_obj"]
        gt_yml[i] = [entry]
        info_yml[i] = {"cam_K": cams[key]["cam_K"], "depth_scale": 1.0}
    with open(os.path.join(target, "gt.yml"), "w") as f:
        yaml.safe_dump(gt_yml, f)
    with open(os.path.join(target, "info.yml"), "w") as f:
        yaml.safe_dump(info_yml, f)
    model = meshlib.read_ply(os.path.join(bop_root, "models", "obj_%06d.ply" % seq))
    meshlib.write_ply(os.path.join(out, "models", "obj_%02d.ply" % seq), model["vertices"],
                      model["faces"], model["colors"], binary=False)
    with open(os.path.join(out, "models", "models_info.yml"), "w") as f:
        yaml.safe_dump({seq: {"diameter": float(meshlib.diameter(model["vertices"]))}}, f)
    return out


def box_surface_distance(points, size=synth.BOX_SIZE_MM):
    """Distance of points to the synthetic box's surface (0 on the surface)."""
    half = np.asarray(size) / 2.0
    inside = np.all(np.abs(points) <= half + 1e-6, axis=1)
    to_face = np.min(half - np.abs(points), axis=1)
    outside = np.linalg.norm(np.maximum(np.abs(points) - half, 0), axis=1)
    return np.where(inside, np.abs(to_face), outside)


def tiny_process(args):
    """One DDP rank with TinyNet (a spawn target: the test's monkeypatch does not reach
    child processes, so the child patches itself)."""
    from pose_train.keypoints import model as kpmodel, train
    kpmodel.build = lambda k, arch: TinyNet(k, arch)
    return train.run_process(args)
