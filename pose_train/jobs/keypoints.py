"""The keypoint localizer's jobs: synthetic LINEMOD, prepare, train, evaluate.

The seed's flag spellings (nClasses, optMethod, ...) are accepted as aliases of the
snake_case names, so the seed's commands run as written.
"""
from pose_train.jobs.fields import (COMPILE, GPUS, KP_DATA, KPTYPE, NODES, OUTF, SEED, SEQ,
                                    TIME_LIMIT)
from pose_train.jobs.spec import IN, MODERN, OUT, Field, Job
from pose_train.pretrained import WORDS

SYNTH = Job("synth-linemod", MODERN, "pose_train.keypoints.synth:main",
            "Write a synthetic LINEMOD sequence in the BOP layout (textured mesh, exact poses).",
            fields=(
                Field("out", "path", "data/synth-linemod", "output folder", role=OUT),
                Field("n", "int", 60, "frames", low=1), SEQ, SEED,
                Field("width", "int", 640, "image width", low=32),
                Field("height", "int", 480, "image height", low=32),
                Field("others", "str", "", "more objects in every frame, ids such as 5,6 (an "
                      "LM-O-like set: objects hide each other)"),
                Field("scene", "int", None, "first scene folder number (default: the object's)",
                      low=0),
                Field("scenes", "int", 1, "scene folders, --n frames each", low=1),
            ), uses_gpu=False)

PREPARE = Job("prepare-keypoints", MODERN, "pose_train.keypoints.prepare:main",
              "Designate keypoints on a LINEMOD object and write per-frame annotations "
              "(OUTF/kp_SS_KPTYPE_K/).",
              fields=(
                  SEQ, KPTYPE,
                  Field("kpnum", "int", 17, "keypoints (corner: 9; PnP needs 4)", low=4),
                  Field("data", "path", "data", "LINEMOD root (BOP or SIXD layout)", role=IN),
                  OUTF,
                  Field("split", "path", None, "training frames: a file (BB8 training_range.txt, "
                        "kp6d or YOLO-6D/PVNet train.txt, JSON {\"train\": [...]}) or random:F "
                        "(a seeded fraction F); default: random, --test_ratio held out",
                        role=IN, words=("random:",)),
                  Field("test_split", "path", None, "test frames: a file in the same forms "
                        "(test.txt); default: every frame not in --split", role=IN),
                  Field("test_ratio", "float", 0.2, "held-out fraction of the default random "
                        "split", low=0),
                  SEED,
                  Field("crop_size", "int", 384, "side of the stored context crops, pixels",
                        low=32),
                  Field("context", "float", 2.0, "crop side / box side", positive=True),
                  Field("min_visib", "float", 0.0, "leave out instances less visible than this "
                        "(BOP scene_gt_info visib_fract, 0..1)", low=0),
                  Field("symmetric", "str", "classic", "which objects get ADD-S: classic "
                        "(eggbox 10, glue 11: the LINEMOD protocol), bop (models_info "
                        "symmetry: 3, 7, 10, 11 in lm) or ids such as 10,11"),
                  Field("keypoints", "path", None, "use these 3D keypoints, in this order, "
                        "instead of designating (kp6d's kps/N/TYPE/obj_XX.ply, x y z text, "
                        "JSON); sets --kpnum", role=IN),
              ), uses_gpu=False)

# The backbone downsamples 32x and the head upsamples 8x: other sizes misalign the heatmaps.
INPUT_H = Field("input_res_h", "int", 320, "network input height (multiples of 32)",
                aliases=("inputResH",), low=32, multiple=32)
INPUT_W = Field("input_res_w", "int", 256, "network input width (multiples of 32)",
                aliases=("inputResW",), low=32, multiple=32)

TRAIN = Job("train-keypoints", MODERN, "pose_train.keypoints.train:main",
            """Train the keypoint localizer (FastPose) on prepared LINEMOD keypoints.

Writes best.pkl, model_N.pkl, final.pkl (kp6d's layout, each with a json sidecar),
training_state.pt and metrics.jsonl in --outf. --dpg_from_epoch E does the seed's two runs
in one: E epochs without DPG, then from the best weights with DPG.""",
            fields=(
                Field("n_classes", "int", None, "keypoints (default: from the prepared folder)",
                      aliases=("nClasses",), low=1),
                SEQ, KPTYPE,
                Field("opt_method", "str", "rmsprop", "optimizer", aliases=("optMethod",),
                      choices=("rmsprop", "adam", "sgd", "nag")),
                Field("train_batch", "int", 48, "batch of one optimizer step over all processes",
                      aliases=("trainBatch",), low=1),
                Field("accumulate", "int", 1, "split each process's share of --trainBatch "
                      "into this many batches, gradients accumulated: the same step in less "
                      "memory", low=1),
                Field("dataset", "str", "linemod", "dataset name", choices=("linemod",)),
                Field("datatype", "str", "gt", "ground-truth LINEMOD frames", choices=("gt",)),
                Field("load_model", "path", None, "weights to start from (.pkl/.pth, strict)",
                      aliases=("loadModel",), role=IN, resumes=False),
                Field("add_dpg", "bool", False, "train with DPG box jitter from the start",
                      aliases=("addDPG",)),
                KP_DATA, OUTF,
                Field("epochs", "int", 50, "epochs", low=1),
                Field("lr", "float", 1e-3, "learning rate", positive=True),
                Field("dpg_from_epoch", "int", None, "epochs without DPG before it switches on",
                      low=0),
                Field("arch", "str", "resnet101", "SE-ResNet backbone",
                      choices=("resnet101", "resnet50")),
                Field("resume", "path", None, "'auto' (newest state in --outf) or a "
                      "training_state.pt", role=IN, resumes=False, words=("auto",)),
                SEED,
                Field("pretrained", "path", None, "backbone start: imagenet (torchvision's "
                      "ResNet of --arch from torch's hub cache; the default when cached), none, "
                      "or a file", role=IN, resumes=False, words=WORDS),
                Field("lr_schedule", "str", "none", "learning-rate schedule over --epochs",
                      choices=("none", "step", "cosine")),
                INPUT_H, INPUT_W,
                Field("hm_gauss", "float", 1.0, "heatmap Gaussian sigma", aliases=("hmGauss",),
                      positive=True),
                Field("amp", "str", "auto", "mixed precision (bf16 on CUDA)",
                      choices=("auto", "bf16", "off")),
                COMPILE, TIME_LIMIT,
                Field("snapshot", "int", 10, "write model_N.pkl every N epochs (0: never)", low=0),
                Field("train_occluded", "bool", False, "also learn hidden keypoints, as kp6d"),
                Field("flip", "bool", False, "mirror augmentation (see the keypoints README)"),
                GPUS,
            ) + NODES)

EVAL = Job("eval-keypoints", MODERN, "pose_train.keypoints.evaluate:main",
           "PnP from predicted keypoints: PCK, 2D projection (<5 px), ADD(-S) (<0.1 d); writes "
           "results.md and overlay PNGs in --outf.",
           fields=(
               Field("model", "path", None, "FastPose weights (arch and K are read from them)",
                     aliases=("loadModel", "load_model"), role=IN, positional=True),
               KP_DATA, OUTF, SEQ, KPTYPE,
               Field("detections", "path", None, "boxes from a detector (JSON)", role=IN),
               Field("topk", "int", None, "keypoints used for PnP (default 3/4 of K)", low=4),
               SEED,
               Field("boxes", "str", "jitter", "ground-truth boxes, DPG-jittered or exact",
                     choices=("jitter", "gt")),
               Field("input_res_h", "int", None, "input height (default: the weights' json "
                     "sidecar, else 320)", aliases=("inputResH",), low=32, multiple=32),
               Field("input_res_w", "int", None, "input width (default: the sidecar, else 256)",
                     aliases=("inputResW",), low=32, multiple=32),
               Field("pck_alpha", "float", 0.05, "PCK radius as a fraction of the longer box "
                     "side", positive=True),
           ))

JOBS = (SYNTH, PREPARE, TRAIN, EVAL)
