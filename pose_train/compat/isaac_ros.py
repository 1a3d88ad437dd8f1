"""What Isaac ROS DOPE needs beside the ONNX graph: its encoder's normalisation, the launch
line, and ``dope_config.yaml``.

Isaac ROS's DNN image encoder normalises every frame before TensorRT sees it. Since Isaac ROS
3.2 (December 2024) its DOPE launch files default to ImageNet's mean and std, and to a
1280x720 network input; before 3.2 the encoder fed 0.5 / 0.5, as DOPE's ROS 1 node still does.
A network trained on one normalisation and fed the other sees a different image, and nothing
in the robot's stack says so. So the export takes the encoder's normalisation (``--encoder``)
and, when it differs from the trained one, starts the graph with an exact per-channel affine
layer that maps the encoder's output back to the trained input:

    trained = (rgb - m_t) / s_t,  encoder = (rgb - m_e) / s_e
    => trained = encoder * (s_e / s_t) + (m_e - m_t) / s_t

It runs before the first convolution's zero padding, so it is exact everywhere, unlike folding
the change into the convolution's weights.
"""
import json
import os
import shlex

import torch
import yaml

from pose_train.errors import UserError
from pose_train.files import atomic_write
from pose_train_py27.dope_io import IMAGENET_MEAN, IMAGENET_STD

ROS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
IMAGENET = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
# --encoder NAME: the normalisation that deployment's encoder applies.
ENCODERS = {"isaac": dict(IMAGENET, note="Isaac ROS DOPE's encoder default since 3.2 (ImageNet)"),
            "imagenet": dict(IMAGENET, note="ImageNet mean/std"),
            "ros": dict(ROS, note="(x - 0.5) / 0.5: DOPE's ROS 1 node, Isaac ROS before 3.2")}
DEFAULT_SIZE = {"dope": (720, 1280)}     # Isaac ROS 3.2's network_image_height / _width
LAUNCH = "ros2 launch isaac_ros_dope isaac_ros_dope_tensor_rt.launch.py"
CONFIG_NAME = "dope_config.yaml"


def encoder_normalization(text, trained):
    """``--encoder`` (isaac | ros | imagenet | trained | MEAN,STD | 3 means,3 stds) -> a
    normalisation dict with name, mean, std."""
    if text in (None, "trained"):
        return dict(trained, name=trained["name"], note="the trained normalisation: no adapter")
    if text in ENCODERS:
        return dict(ENCODERS[text], name=text)
    try:
        numbers = [float(v) for v in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) == 2:
        numbers = [numbers[0]] * 3 + [numbers[1]] * 3
    if len(numbers) != 6 or not all(0 <= v <= 1 for v in numbers[:3]) or not all(
            0 < v <= 1 for v in numbers[3:]):
        raise UserError("--encoder %r: give isaac, ros, imagenet, trained, MEAN,STD or three "
                        "means and three stds (RGB, for pixels in [0, 1]: means in [0, 1], stds "
                        "in (0, 1])" % text)
    return {"name": "custom", "mean": numbers[:3], "std": numbers[3:],
            "note": "given with --encoder"}


def same(a, b):
    return all(abs(x - y) < 1e-9 for x, y in zip(a["mean"] + a["std"], b["mean"] + b["std"]))


class EncoderAdapter(torch.nn.Module):
    """The encoder's output -> the input the network was trained on, then the network."""

    def __init__(self, net, encoder, trained):
        super().__init__()
        s_e, m_e = torch.tensor(encoder["std"]), torch.tensor(encoder["mean"])
        s_t, m_t = torch.tensor(trained["std"]), torch.tensor(trained["mean"])
        self.register_buffer("scale", (s_e / s_t).view(1, 3, 1, 1))
        self.register_buffer("shift", ((m_e - m_t) / s_t).view(1, 3, 1, 1))
        self.net = net

    def forward(self, x):
        return self.net(x * self.scale + self.shift)


def launch_line(onnx_path, object_name, height, width, encoder, input_name, output_name):
    """The full `ros2 launch` command for this export, every value stated (the defaults
    changed once already), each argument quoted for the shell."""
    onnx_path = os.path.abspath(onnx_path)
    pairs = [("model_file_path", onnx_path),
             ("engine_file_path", os.path.splitext(onnx_path)[0] + ".plan"),
             ("object_name", object_name),
             ("network_image_width", width), ("network_image_height", height),
             ("encoder_image_mean", json.dumps([round(v, 6) for v in encoder["mean"]])),
             ("encoder_image_stddev", json.dumps([round(v, 6) for v in encoder["std"]])),
             ("input_binding_names", json.dumps([input_name])),
             ("output_binding_names", json.dumps([output_name]))]
    return " ".join([LAUNCH] + [shlex.quote("%s:=%s" % kv) for kv in pairs])


def dope_config(object_name, dimensions_cm):
    """Isaac ROS DOPE's config: the cuboid's size in cm under its object name."""
    return {"dope": {"ros__parameters": {"dimensions": {
        object_name: [float(v) for v in dimensions_cm]}}}}


def read_dope_config(folder):
    """The ``dope_config.yaml`` already in ``folder`` (None if none), read before the export so
    that a file we must not overwrite stops the run before anything is written."""
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
        dict(config["dope"]["ros__parameters"]["dimensions"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        raise UserError("%s exists and is not an Isaac ROS DOPE config (dope: ros__parameters: "
                        "dimensions:); move it away, or export into another folder" % path)
    return config


def write_dope_config(folder, dimensions, existing=None, writer="export onnx"):
    """``folder/dope_config.yaml`` with ``dimensions`` ({object: [x, y, z] cm}), keeping the
    other objects of ``existing``: one file serves every network deployed from the folder.
    Returns (its path, {object: the dimensions it replaced})."""
    config = existing or dope_config(*next(iter(dimensions.items())))
    known = config["dope"]["ros__parameters"]["dimensions"] = dict(
        config["dope"]["ros__parameters"]["dimensions"])
    replaced = {name: known[name] for name in dimensions if existing and name in known}
    known.update((name, [float(v) for v in dims]) for name, dims in dimensions.items())
    path = os.path.join(folder, CONFIG_NAME)
    text = yaml.safe_dump(config, default_flow_style=None, sort_keys=True)
    atomic_write(path, lambda f: f.write("# Isaac ROS DOPE: cuboid dimensions in cm (x, y, z), "
                                         "written by pose-train %s\n---\n" % writer + text),
                 binary=False)
    return path, replaced
