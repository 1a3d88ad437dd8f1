"""Every POSE_TRAIN_* environment variable pose-train reads, declared once.

The modules that read one take its name from here; `pose-train --help` prints the table (its
"environment" section) and docs/cli.md repeats it. A test fails when a module reads a
POSE_TRAIN_* variable this table does not list.
"""
from collections import namedtuple

Variable = namedtuple("Variable", "name default meaning")

LOCAL = "POSE_TRAIN_LOCAL"
STOP_WAIT = "POSE_TRAIN_STOP_WAIT"
CONTINUE_PREFIX = "POSE_TRAIN_CONTINUE_PREFIX"
CONTINUE_SKIP = "POSE_TRAIN_CONTINUE_SKIP"
PROGRESS_EVERY = "POSE_TRAIN_PROGRESS_EVERY"
TB_IMAGES_EVERY = "POSE_TRAIN_TB_IMAGES_EVERY"
CACHE = "POSE_TRAIN_CACHE"
RUNTIME = "POSE_TRAIN_RUNTIME"
RUN_ID = "POSE_TRAIN_RUN_ID"
# Where the launcher mounts a host path in the container: /host + its absolute path.
HOST_PREFIX = "/host"
MODERN_IMAGE = "POSE_TRAIN_MODERN_IMAGE"
LEGACY_IMAGE = "POSE_TRAIN_LEGACY_IMAGE"
WHEELHOUSE = "POSE_TRAIN_WHEELHOUSE"
DOCKER_TIMEOUT = "POSE_TRAIN_DOCKER_TIMEOUT"
LEGACY_PYTHON = "POSE_TRAIN_LEGACY_PYTHON"
NODE_RANK = "POSE_TRAIN_NODE_RANK"
AGENT_PID = "POSE_TRAIN_AGENT_PID"

VARIABLES = (
    Variable(LOCAL, "", "1: run every job in this process (set inside pose-train's images)"),
    Variable(STOP_WAIT, "600", "seconds the launcher waits for a stopped job to save "
                               "(--stop-wait sets it)"),
    Variable(CONTINUE_PREFIX, "", "the command a stopped trainer's \"continue with:\" line "
                                  "starts with (compose.yaml sets its service's)"),
    Variable(CONTINUE_SKIP, "", "flags that command already gives, left out of the line "
                                "(--flag=value, space-separated)"),
    Variable(PROGRESS_EVERY, "30", "seconds between progress lines without a terminal; 0: "
                                   "every step"),
    Variable(TB_IMAGES_EVERY, "500", "steps between TensorBoard pictures; 0: never"),
    Variable(CACHE, "OUTF/.cache", "where train dope keeps its generated default data set"),
    Variable(RUNTIME, "", "the image's runtime, modern or melodic (set inside the images)"),
    Variable(RUN_ID, "", "the launcher's id of this run, also its log's name (set by the "
                         "launcher)"),
    Variable(MODERN_IMAGE, "pose-train/modern:VERSION", "the modern image the launcher runs "
                                                         "(e.g. a registry copy)"),
    Variable(LEGACY_IMAGE, "pose-train/legacy:VERSION", "the legacy (Melodic) image the "
                                                         "launcher runs"),
    Variable(WHEELHOUSE, ".wheelhouse", "where `images build` keeps the locked wheels"),
    Variable(DOCKER_TIMEOUT, "600", "seconds the docker SDK waits for the engine per call"),
    Variable(LEGACY_PYTHON, "", "a python2.7 with torch 1.4: convert --verify --local runs the "
                                "legacy verifier with it"),
    Variable(NODE_RANK, "", "set by a several-node run for its processes: the node's "
                            "--node_rank, by which they number themselves"),
    Variable(AGENT_PID, "", "set by a several-node run for its processes: the pose-train that "
                            "started them, which they outlive by no more than a step"),
)

# Read by compose.yaml and the images' entrypoint, not by Python: listed so that one table
# holds every POSE_TRAIN_* name a user can set.
COMPOSE_VARIABLES = (
    Variable("POSE_TRAIN_DATA", "./data", "compose: the host folder mounted at /data"),
    Variable("POSE_TRAIN_OUTPUT", "./output", "compose: the host folder mounted at /out"),
    Variable("POSE_TRAIN_TORCH_HOME", "./output/.cache/torch", "compose: where pretrained "
                                                                "weights are looked for"),
    Variable("POSE_TRAIN_TENSORBOARD_PORT", "6006", "compose: the tensorboard service's port"),
    Variable("POSE_TRAIN_MODERN_BASE", "nvidia/cuda:...", "compose build: the modern image's "
                                                          "base"),
    Variable("POSE_TRAIN_VARIANT", "cuda", "compose build: cuda or cpu wheels in the modern "
                                           "image"),
    Variable("POSE_TRAIN_LEGACY_BASE", "ros:melodic-ros-base", "compose build: the legacy "
                                                               "image's base"),
    Variable("POSE_TRAIN_OUT", "", "entrypoint: the output folder whose owner the job runs as"),
    Variable("POSE_TRAIN_UID", "", "entrypoint: run the job as this user id instead"),
    Variable("POSE_TRAIN_GID", "", "entrypoint: and this group id"),
)


def help_section(width=100):
    """The "environment" section of `pose-train --help`."""
    import textwrap
    name_width = max(len(v.name) for v in VARIABLES + COMPOSE_VARIABLES)
    lines = ["environment:"]
    for v in VARIABLES + COMPOSE_VARIABLES:
        text = v.meaning + (" (default %s)" % v.default if v.default else "")
        wrapped = textwrap.wrap(text, width - name_width - 4, break_on_hyphens=False) or [""]
        lines.append("  %-*s  %s" % (name_width, v.name, wrapped[0]))
        lines += ["  %s  %s" % (" " * name_width, more) for more in wrapped[1:]]
    return "\n".join(lines)
