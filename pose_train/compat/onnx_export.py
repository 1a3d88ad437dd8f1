"""`pose-train export onnx`: weights -> an ONNX graph for Isaac ROS DOPE / TensorRT.

DOPE's graph is what Isaac ROS DOPE binds: one input ``input`` (1x3xHxW RGB float32, already
normalised, 480x640 by default) and one output ``output``, the last stage's 9 belief maps and
16 affinity fields concatenated: (1, 25, H/8, W/8). FastPose gives (1, K, H/4, W/4) heatmaps.
Every export is checked: onnx.checker, then onnxruntime (CPU) against torch on a real frame
through the same preprocessing, max |diff| <= 1e-4, written beside the file as
NAME.onnx.parity.json. The weights' normalisation goes into the graph's metadata.
"""
import json
import os
import shutil
import tempfile

import numpy as np
import torch

from pose_train.errors import UserError
from pose_train.files import atomic_write, atomic_write_json, read_sidecar, report_stale_temps
from pose_train.training.checkpoint import load_file, weights_of
from pose_train_py27.atomic import TEMP_SUFFIX, temp_prefix
from pose_train_py27.keys import strip_prefix
from pose_train_py27.nets import create_model
from pose_train_py27.verify import infer_model

PARITY_MAX = 1e-4
OPSET = 17


class DopeGraph(torch.nn.Module):
    """DOPE with Isaac ROS DOPE's single output: last-stage beliefs + affinities."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        beliefs, affinities = self.net(x)
        return torch.cat([beliefs[-1], affinities[-1]], 1)


def load_network(path, kind):
    """(torch module ready to export, 'dope' | 'fastpose'), loaded strictly."""
    state = strip_prefix(weights_of(load_file(path), path))
    name, kwargs = infer_model(state)
    want = {"dope": "dope", "keypoints": "fastpose"}.get(kind, name)
    if name is None or name != want:
        raise UserError("%s: %s, not %s weights; pass --model %s or the right file"
                        % (path, "FastPose weights" if name == "fastpose" else "DOPE weights"
                           if name == "dope" else "not a known network's weights", kind,
                           name and {"fastpose": "keypoints"}.get(name, name)))
    net = create_model(name, **kwargs)
    net.load_state_dict(state, strict=True)
    net.eval()
    return (DopeGraph(net) if name == "dope" else net), name


def sample_frame(width, height, seed=0):
    """A synthetic DOPE scene (cuboid over clutter) at the export size: real image statistics
    for the parity check, no download."""
    from pose_train.dope.geometry import intrinsics_matrix
    from pose_train.dope.synth import render_sample
    rng = np.random.default_rng(seed)
    f = 0.9 * width
    img, _ = render_sample(rng, width, height, "cube", intrinsics_matrix(f, f, width / 2.0,
                                                                           height / 2.0))
    return img


def preprocess(rgb, norm):
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)
    mean = torch.tensor(norm["mean"]).view(3, 1, 1)
    std = torch.tensor(norm["std"]).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def _export(graph, x, path, args):
    dynamic = None
    if args.dynamic:
        axes = {0: "batch", 2: "height", 3: "width"}
        dynamic = {args.input_name: axes, args.output_name: axes}
    torch.onnx.export(graph, x, path, input_names=[args.input_name],
                      output_names=[args.output_name], opset_version=OPSET,
                      dynamic_axes=dynamic, dynamo=False)


def _finish(path, meta):
    """onnx.checker, then the normalisation and provenance into the graph's metadata."""
    import onnx
    model = onnx.load(path)
    onnx.checker.check_model(model)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, path)


def parity(path, graph, x, input_name):
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {input_name: x.numpy()})[0]
    with torch.no_grad():
        want = graph(x).numpy()
    if got.shape != want.shape:
        raise UserError("%s: onnxruntime gives shape %s, torch %s" % (path, got.shape, want.shape))
    return float(np.abs(got - want).max()), list(got.shape)


def _check_out(out):
    """--out refused in one line before the export (a folder, or one that cannot be written)."""
    from pose_train_py27.dope_io import InputError, output_folder
    if os.path.isdir(out):
        raise UserError("--out %s is a folder; pass the .onnx file to write" % out)
    folder = os.path.dirname(os.path.abspath(out))
    try:
        output_folder(folder, "--out", shown=out)
        os.makedirs(folder, exist_ok=True)
    except InputError as err:
        raise UserError(str(err))
    except OSError as err:   # a place the kernel refuses (/proc, a read-only mount)
        raise UserError("--out %s: cannot make its folder %s (%s); pass another path"
                        % (out, folder, err.strerror or err))


def main(args):
    graph, name = load_network(args.weights, args.model)
    meta = read_sidecar(args.weights)
    norm = read_sidecar(args.weights, normalization=True)
    height, width = args.height, args.width
    if name == "fastpose" and (height, width) == (480, 640):
        height, width = meta.get("input_hw") or (320, 256)   # FastPose's own input size
    out = args.out
    _check_out(out)
    x = preprocess(sample_frame(width, height), norm)
    info = {"network": name, "normalization": norm["name"], "mean": norm["mean"],
            "std": norm["std"], "input": "%s: 1x3x%dx%d RGB float32, (x/255 - mean) / std"
            % (args.input_name, height, width), "source_weights": os.path.abspath(args.weights)}

    # torch.onnx.export and onnx.save write paths, not file objects: the graph is made and
    # checked in a scratch folder, and only a graph that passed is written to OUT atomically.
    folder = os.path.dirname(os.path.abspath(out))
    report_stale_temps(folder)
    with tempfile.TemporaryDirectory(prefix=temp_prefix(out), suffix=TEMP_SUFFIX, dir=folder) as tmp:
        scratch = os.path.join(tmp, "graph.onnx")
        _export(graph, x, scratch, args)
        _finish(scratch, info)
        diff, shape = parity(scratch, graph, x, args.input_name)
        info.update(max_abs_diff=diff, output_shape=shape)
        if diff > PARITY_MAX:
            raise UserError("%s: onnxruntime differs from torch by %.2e (> %.0e); not written"
                            % (out, diff, PARITY_MAX))
        with open(scratch, "rb") as src:
            atomic_write(out, lambda f: shutil.copyfileobj(src, f))
    atomic_write_json(out + ".parity.json", info)
    print("wrote %s: %s -> %s %s; onnxruntime vs torch max |diff| %.2e on a %dx%d frame"
          % (out, info["input"], args.output_name, info["output_shape"], info["max_abs_diff"],
             width, height))
    if name == "dope":
        print("Isaac ROS DOPE: network_image_width:=%d network_image_height:=%d "
              "encoder_image_mean:=%s encoder_image_stddev:=%s input_binding_names:=['%s'] "
              "output_binding_names:=['%s']" % (width, height, json.dumps(norm["mean"]),
                                                json.dumps(norm["std"]), args.input_name,
                                                args.output_name))
    return 0
