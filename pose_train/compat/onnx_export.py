"""`pose-train export onnx`: weights -> an ONNX graph for Isaac ROS DOPE / TensorRT.

DOPE's graph is what Isaac ROS DOPE binds: one input ``input`` (1x3xHxW RGB float32, already
normalised by Isaac ROS's encoder, 720x1280 by default) and one output ``output``, the last
stage's 9 belief maps and 16 affinity fields concatenated: (1, 25, H/8, W/8). The encoder's
normalisation (``--encoder``, see isaac_ros.py) is mapped to the trained one inside the graph.
FastPose gives (1, K, H/4, W/4) heatmaps. Every export is checked: onnx.checker, then
onnxruntime (CPU) fed the encoder's normalisation of a real frame against torch fed the trained
one, max |diff| <= 1e-4, written beside the file as NAME.onnx.parity.json. Both
normalisations go into the graph's metadata.
"""
import os
import shutil
import tempfile

import numpy as np
import torch

from pose_train.compat import isaac_ros
from pose_train_py27.dope_io import parse_dimensions
from pose_train.errors import UserError
from pose_train.files import (atomic_write, atomic_write_json, job_folder, read_sidecar,
                              report_stale_temps)
from pose_train.training.checkpoint_io import load_file, weights_of
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


def parity(path, reference, x_onnx, x_torch, input_name):
    """max |onnxruntime(x_onnx) - reference(x_torch)|: the exported graph fed what the
    deployment's encoder gives, against the trained network fed what it was trained on."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {input_name: x_onnx.numpy()})[0]
    with torch.no_grad():
        want = reference(x_torch).numpy()
    if got.shape != want.shape:
        raise UserError("%s: onnxruntime gives shape %s, torch %s" % (path, got.shape, want.shape))
    return float(np.abs(got - want).max()), list(got.shape)


def _check_out(out, weights):
    """--out refused in one line before the export (a folder, or one that cannot be written)."""
    if os.path.isdir(out):
        raise UserError("--out %s is a folder; pass the .onnx file to write" % out)
    if os.path.splitext(os.path.basename(out))[1].lower() != ".onnx":   # never over the weights
        raise UserError("--out %s: give a file name ending in .onnx, e.g. net.onnx" % out)
    if os.path.exists(weights) and os.path.exists(out) and os.path.samefile(weights, out):
        raise UserError("--out %s is the weights file itself; pass another name" % out)


def main(args):
    graph, name = load_network(args.weights, args.model)
    meta = read_sidecar(args.weights)
    trained = _trained_normalization(args, meta)
    encoder = isaac_ros.encoder_normalization(
        ("isaac" if name == "dope" else "trained") if args.encoder is None else args.encoder, trained)
    if args.object is not None and not args.object.strip():
        raise UserError("--object %r: give the object's name (Isaac ROS's object_name)" % args.object)
    height, width = _size(args, name, meta)
    _check_out(args.out, args.weights)
    # The folder is claimed: two exports into it would race on dope_config.yaml's merge.
    with job_folder(os.path.dirname(os.path.abspath(args.out)), claim=True, flag="--out",
                    shown=args.out) as folder:
        return _write(args, graph, name, meta, trained, encoder, (height, width), folder)


def _write(args, graph, name, meta, trained, encoder, size, folder):
    """The graph, checked in onnxruntime, written to --out with its parity record and notes."""
    out, (height, width) = args.out, size
    if name == "dope":   # bad deployment inputs stop the run before anything is written
        target = (args.object or meta.get("object"),
                  parse_dimensions(args.dimensions) if args.dimensions else meta.get("dimensions_cm"),
                  isaac_ros.read_dope_config(folder))
    deployed = graph if isaac_ros.same(encoder, trained) else isaac_ros.EncoderAdapter(graph, encoder, trained)
    frame = sample_frame(width, height)
    x_trained, x_encoder = preprocess(frame, trained), preprocess(frame, encoder)
    info = {"network": name, "normalization": trained["name"], "mean": trained["mean"],
            "std": trained["std"], "encoder": encoder["name"], "encoder_mean": encoder["mean"],
            "encoder_std": encoder["std"], "adapter": deployed is not graph,
            "input": "%s: %s RGB float32, (x/255 - mean) / std with the encoder's mean/std"
            % (args.input_name, "Nx3xHxW (dynamic)" if args.dynamic else "1x3x%dx%d" % (height, width)),
            "source_weights": os.path.abspath(args.weights)}

    # torch.onnx.export and onnx.save write paths, not file objects: the graph is made and
    # checked in a scratch folder, and only a graph that passed is written to OUT atomically.
    report_stale_temps(folder)
    with tempfile.TemporaryDirectory(prefix=temp_prefix(out), suffix=TEMP_SUFFIX, dir=folder) as tmp:
        scratch = os.path.join(tmp, "graph.onnx")
        _export(deployed, x_encoder, scratch, args)
        _finish(scratch, info)
        diff, shape = parity(scratch, graph, x_encoder, x_trained, args.input_name)
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
        _deploy_notes(args, out, (height, width), encoder, trained, *target)
    return 0


def _trained_normalization(args, meta):
    """--normalize, else the sidecar's; weights without one are said to be taken as ros."""
    from pose_train_py27 import sidecar
    norm = sidecar.normalization_of(meta, args.normalize, sidecar.path_of(args.weights))
    if args.normalize is None and not meta.get("normalization"):
        print("note: %s has no sidecar naming its normalisation; taken as ros (0.5 / 0.5, what "
              "DOPE's node feeds stock weights). Pass --normalize imagenet if they were trained "
              "as DOPE's own trainer trains" % args.weights)
    return norm


def _size(args, name, meta):
    """(height, width): given, else Isaac ROS's 1280x720 for DOPE, FastPose's trained size."""
    default = isaac_ros.DEFAULT_SIZE.get(name) or tuple(meta.get("input_hw") or (320, 256))
    return (args.height or default[0]), (args.width or default[1])


def _deploy_notes(args, out, size, encoder, trained, name, dims, config):
    """The adapter said in words, dope_config.yaml beside the graph, and the launch line."""
    if not isaac_ros.same(encoder, trained):
        print("input adapter: the encoder's %s normalisation (mean %s, std %s) is mapped in the "
              "graph to the %s one these weights trained on" % (encoder["name"], encoder["mean"],
                                                                 encoder["std"], trained["name"]))
    if name and dims:
        path, replaced = isaac_ros.write_dope_config(os.path.dirname(os.path.abspath(out)),
                                                     {name: dims}, config)
        before = replaced.get(name)
        print("wrote %s (%s: %s cm%s)" % (path, name, dims, "" if before in (None, list(dims)) else
                                          "; it was %s there before" % before))
    else:
        print("no %s written: the weights' sidecar records no %s; pass --object NAME "
              "--dimensions X,Y,Z (cm)" % (isaac_ros.CONFIG_NAME, "dimensions" if name else "object"))
    print("Isaac ROS DOPE:\n  " + isaac_ros.launch_line(out, name or "OBJECT", size[0], size[1], encoder,
                                                        args.input_name, args.output_name))
