"""Checkpoint jobs: convert between the runtimes, inspect, verify in the Melodic runtime."""
import os

from pose_train.jobs.fields import NET_KIND, TRUST
from pose_train.jobs.spec import IN, LEGACY, MODERN, OUT_FILE, Field, Job

PARITY_SUFFIX = ".parity.pt"

def default_convert_out(src, to, fmt):
    """net_epoch_10.pth -> net_epoch_10_melodic.pth (beside the source)."""
    stem = os.path.splitext(src)[0]
    if to == "melodic":
        return stem + "_melodic.pth"
    return stem + ("_modern.safetensors" if fmt == "safetensors" else "_modern.pth")


def convert_defaults(args):
    """--out defaults to a name beside SRC (net_melodic.pth)."""
    if args["src"] is not None and not args["out"]:
        args["out"] = default_convert_out(args["src"], args["to"], args["format"])
    return args


def verify_defaults(args):
    if args["ckpt"] is not None and args["reference"] is None \
            and os.path.exists(args["ckpt"] + PARITY_SUFFIX):
        args["reference"] = args["ckpt"] + PARITY_SUFFIX
    return args


def verify_after_convert(args):
    """Through the launcher, convert --verify is followed by the legacy image's verifier."""
    if not args.verify:
        return None
    return "verify-melodic", dict(ckpt=args.out, reference=args.out + PARITY_SUFFIX,
                                  model=args.model)


def export_defaults(args):
    if args["weights"] is not None and not args["out"]:
        args["out"] = os.path.splitext(args["weights"])[0] + ".onnx"
    return args


CONVERT = Job("convert", MODERN, "pose_train.compat.convert:main",
              "Convert a checkpoint for ROS Melodic or modern torch.\n\n--verify loads the "
              "result in the real Python 2.7 + torch 1.4 runtime and compares outputs.",
              fields=(
                  Field("src", "path", None, "checkpoint to convert", role=IN, positional=True,
                        beside=True),
                  Field("to", "str", "melodic", "target runtime", choices=("melodic", "modern")),
                  Field("out", "path", None, "output file (default: beside SRC, "
                        "NAME_melodic.pth)", role=OUT_FILE),
                  NET_KIND,
                  Field("keep_prefix", "bool", False, "keep the keys' prefix as it is"),
                  Field("strip_prefix", "bool", False, "drop a module. prefix"),
                  Field("verify", "bool", False, "check the result in the legacy runtime (exit 3 "
                        "when it cannot run)"),
                  Field("format", "str", "pth", "output format (modern only: safetensors)",
                        choices=("pth", "safetensors")),
                  TRUST,
                  Field("dimensions", "str", None, "DOPE: the cuboid's x,y,z in cm for the ROS "
                        "node's config (default: from the weights' sidecar)"),
              ), uses_gpu=False, defaults=convert_defaults,
              then=verify_after_convert)

INSPECT = Job("inspect", MODERN, "pose_train.compat.inspect_ckpt:main",
              "Show a checkpoint's format, globals, tensors and loadability.\n\nFormat, pickle "
              "protocol, every global the pickle references (read, never run), tensors, and which "
              "runtimes can load CKPT.",
              fields=(Field("ckpt", "path", None, "checkpoint", role=IN, positional=True), TRUST),
              uses_gpu=False)

VERIFY = Job("verify-melodic", LEGACY, "pose_train_py27.verify:main",
             "Load a checkpoint as the ROS Melodic node does and compare outputs.\n\nRuns in "
             "Python 2.7 + torch 1.4, against the parity reference convert wrote. --gpus 1 runs "
             "the forward pass on a GPU, refused when torch 1.4 has no kernels for it.",
             fields=(
                 Field("ckpt", "path", None, "converted checkpoint", role=IN, positional=True),
                 Field("reference", "path", None, "parity file (default: CKPT.parity.pt when it "
                       "exists; without one the file is only loaded strictly)", role=IN),
                 NET_KIND,
                 Field("gpus", "int", 0, "1: forward pass on the GPU", low=0),
             ), uses_gpu=False, words=("verify",), defaults=verify_defaults)


EXPORT_ONNX = Job("export-onnx", MODERN, "pose_train.compat.onnx_export:main",
                  "Export weights to ONNX for Isaac ROS DOPE / TensorRT.\n\nDOPE: one input "
                  "(1x3xHxW, normalised RGB) and one output, the last stage's 9 beliefs + 16 "
                  "affinities (1x25xH/8xW/8), as Isaac ROS DOPE binds them, at Isaac ROS 3.2's "
                  "1280x720; the graph takes what Isaac ROS's encoder feeds (--encoder) and maps "
                  "it to the trained normalisation. Writes dope_config.yaml beside it and prints "
                  "the ros2 launch line. FastPose: (1xKxH/4xW/4) heatmaps. Checked with "
                  "onnx.checker and against torch in onnxruntime (max |diff| <= 1e-4, stored in "
                  "OUT.parity.json).",
                  fields=(
                      Field("weights", "path", None, "DOPE or FastPose weights", role=IN,
                            positional=True, beside=True),
                      NET_KIND,
                      Field("encoder", "str", None, "the normalisation the deployment's encoder "
                            "applies: isaac (Isaac ROS >= 3.2's default, ImageNet), ros (0.5/0.5: "
                            "Isaac ROS < 3.2, DOPE's ROS 1 node), imagenet, trained (no adapter), "
                            "or MEAN,STD / 3 means,3 stds (default: isaac for DOPE, trained for "
                            "FastPose)"),
                      Field("height", "int", None, "input height (default: DOPE 720, as Isaac "
                            "ROS; FastPose the sidecar's, else 320)", low=32, high=4320, multiple=8),
                      Field("width", "int", None, "input width (default: DOPE 1280; FastPose "
                            "else 256)", low=32, high=7680, multiple=8),
                      Field("normalize", "str", None, "the normalisation the weights trained "
                            "on (default: the sidecar's; weights without one: ros, as DOPE's node "
                            "feeds them)", choices=("ros", "imagenet")),
                      Field("object", "str", None, "object name for Isaac ROS (default: the "
                            "sidecar's)"),
                      Field("dimensions", "str", None, "cuboid X,Y,Z in cm for dope_config.yaml "
                            "(default: the sidecar's)"),
                      Field("input_name", "str", "input", "input binding name"),
                      Field("output_name", "str", "output", "output binding name"),
                      Field("dynamic", "bool", False, "batch, height and width as dynamic axes"),
                      Field("out", "path", None, "output file (default: beside the weights, "
                            "NAME.onnx)", role=OUT_FILE),
                  ), uses_gpu=False, words=("export", "onnx"),
                  defaults=export_defaults)


NODE_CONFIG = Job("node-config", MODERN, "pose_train.compat.node_config:main",
                  """Write DOPE's ROS 1 node config for several objects, and Isaac ROS's dope_config.yaml.

One network per object, as the node runs them: config_pose.yaml gets each object's weights
(package://dope/weights/FILE), dimensions in cm, a distinct class id and draw colour (the
colours infer dope draws), and the shared topics, thresholds, sigma and downscale_height (the
first network's; a network trained at another scale is said). dope_config.yaml beside it gets
every object's dimensions, keeping the other objects already there. Pass the weights the robot
will load: convert --to melodic's output for Melodic.""",
                  fields=(
                      Field("weights", "path", None, "DOPE weights, one per object (each with "
                            "its json sidecar, as train dope and convert write them)", role=IN,
                            positional=True, beside=True, many=True),
                      Field("out", "path", "config_pose.yaml", "the node's config file",
                            role=OUT_FILE),
                      Field("object", "str", None, "NAME1,NAME2,... in the order of the weights "
                            "(default: each sidecar's)"),
                      Field("dimensions", "str", None, "an NDDS _object_settings.json naming each "
                            "object (default: each sidecar's cuboid, in cm)"),
                      Field("topic_camera", "str", "/dope/webcam/image_raw", "the image topic"),
                      Field("topic_camera_info", "str", "/dope/webcam/camera_info",
                            "the camera_info topic"),
                      Field("topic_publishing", "str", "dope", "the namespace the node publishes "
                            "under"),
                      Field("unrectified", "bool", False, "input_is_rectified: false (the node "
                            "then uses camera_info's K and D)"),
                      Field("force", "bool", False, "replace an --out that configures objects "
                            "these weights do not"),
                  ), uses_gpu=False, words=("node-config",))


JOBS = (CONVERT, INSPECT, VERIFY, EXPORT_ONNX, NODE_CONFIG)
