"""DOPE's jobs: train, validate, synthetic data, inference, evaluation."""
import os

from pose_train.jobs.fields import COMPILE, GPUS, NODES, OUTF, SEED, TIME_LIMIT
from pose_train.jobs.spec import IN, MODERN, OUT, Field, Job
from pose_train.pretrained import WORDS
from pose_train_py27 import job_fields

DATA = Field("data", "path", [], "dataset folder; default: a synthetic set of "
             "--synth_n images, generated once", role=IN, many=True)
OBJECT = Field("object", "str", "cube", "object class to train on (case-insensitive)")
IMAGESIZE = Field("imagesize", "int", 400, "square crop side in pixels (the network has stride 8)",
                  low=32, multiple=8)
STRICT = Field("strict", "bool", False, "a data problem is fatal instead of skipped and reported")
MAX_PIXELS = Field(**job_fields.MAX_PIXELS)
NORMALIZE = Field("normalize", "str", "ros", "input normalisation: ros = (x - 0.5) / 0.5, what "
                  "DOPE's ROS 1 node feeds; imagenet = DOPE's own trainer (and Isaac ROS >= 3.2's "
                  "encoder; export onnx adapts either to Isaac ROS)",
                  choices=("ros", "imagenet"))

TRAIN = Job("train-dope", MODERN, "pose_train.dope.train:main", """Train DOPE on one object.

Writes net_epoch_XX.pth (+ .json naming the input normalisation) after every epoch, and
training_state.pt (exact resume). Every epoch it validates on held-out frames (--val, or 5%
of --data never trained on): loss against the empty-map loss, peaks, and poses through
infer dope's decode and PnP (detection rate, ADD < 0.1 d, AUC, 2D error), into metrics.jsonl
and TensorBoard; net_best.pth (+ .json) is rewritten whenever ADD < 0.1 d improves.

Several machines: the same command on each, with --nnodes N --node_rank R --rdzv HOST:PORT
(node 0's address); the output folder must be shared by every node.""",
    fields=(
        DATA, OBJECT, OUTF,
        Field("epochs", "int", None, "epochs in the run, counted from its first epoch (a "
              "resumed run keeps its own first epoch; --net of weights starts a run at the "
              "epoch after theirs) (default: 30, the seed's; 10 for the embedded data on a CPU)",
              low=1),
        Field("net", "path", None, "weights to start from (numbering continues from the file "
              "name) or a training_state.pt (exact resume)", role=IN, resumes=False),
        Field("save", "bool", False, "write PNG grids of augmented batches", resumes=False),
        Field("keep_epochs", "int", 3, "keep the newest N net_epoch_*.pth this run wrote (each "
              "201 MB; net_best.pth and training_state.pt always stay); 0 keeps every epoch",
              low=0),
        Field("batchsize", "int", None, "batch per process (default: 32; 8 for the embedded "
              "data on a CPU)", low=1),
        Field("accumulate", "int", 1, "batches per optimizer step (gradient accumulation): "
              "the step sees batchsize x processes x this many images, as that many more "
              "processes would", low=1),
        Field("recipe", "str", None, "how to train (default: fast; a resumed run keeps its "
              "own): fast learns from a random trunk in minutes (stage 1 and a lighter trunk "
              "with BatchNorm, folded into DOPE's layout when saved; AdamW, warm-up, cosine "
              "decay; wide, weighted Gaussians); dope is DOPE's own trainer (all six stages, "
              "Adam at a constant --lr, sigma 4 px)", choices=("fast", "dope")),
        Field("lr", "float", None, "peak learning rate (default: 1e-3 with --recipe fast, "
              "1e-4 with dope, DOPE's)", positive=True),
        Field("workers", "int", None, "data loader processes (default: from the CPU count)",
              low=0),
        GPUS,
        Field("resume", "str", None, "'auto': continue from the newest state in --outf (for "
              "a file, use --net)", choices=("auto",), resumes=False),
        TIME_LIMIT, SEED,
        Field("imagesize", "int", None, "square crop side in pixels, stride 8 (default: 400; "
              "128 for the embedded data on a CPU)", low=32, multiple=8),
        Field("pretrained", "path", None, "trunk start: imagenet (torchvision's VGG-19 from "
              "torch's hub cache; the default when cached), none (random), or a file",
              role=IN, resumes=False, words=WORDS),
        STRICT, MAX_PIXELS, NORMALIZE,
        Field("sigma", "float", None, "belief Gaussian sigma in crop pixels, the same all run "
              "(default: 4 with --recipe dope, DOPE's; fast shrinks it from 12 to 8)",
              positive=True),
        Field("amp", "str", "auto", "mixed precision", choices=("auto", "bf16", "fp16", "off")),
        COMPILE,
        Field("synth_n", "int", None, "images in the embedded synthetic set (default: 200 "
              "of 640x480; 400 of 192x144 on a CPU)", low=1),
        Field("decode_cache", "str", "auto", "keep decoded frames on disk after epoch 1",
              choices=("auto", "off")),
        Field("val", "path", [], "held-out folder (either dialect); default: a "
              "seeded 5%% of --data (8-200 frames), listed in OUTF/val_frames.txt; off: no "
              "validation, every frame trains", role=IN, many=True, words=("off",)),
        Field("val_every", "int", None, "also validate every N steps (default: each epoch "
              "only)", low=1),
    ) + NODES)

VALIDATE = Job("validate-dope", MODERN, "pose_train.dope.validate:main",
               "Check a dataset before training: a data report and PNG grids of augmented "
               "samples with cuboids and belief maps drawn.",
               fields=(DATA, OBJECT, OUTF, IMAGESIZE, STRICT, MAX_PIXELS, SEED, NORMALIZE),
               uses_gpu=False)

SYNTH = Job("synth-dope", MODERN, "pose_train.dope.synth:main",
            """Write a synthetic NViSII-format DOPE dataset: your mesh rendered headless, or textured cuboids.

--mesh FILE (OBJ + MTL + texture, PLY with vertex colours, glTF/GLB) renders your object with
OpenGL through EGL (Mesa on a CPU, the NVIDIA driver on a GPU), randomised as DOPE's
generators do: pose and distance, --instances copies, distractors (your --distractors meshes
or random shapes, some occluding), 1-4 coloured lights, backgrounds (your --backgrounds or
procedural), colour jitter, blur and noise. The cuboid is the mesh's axis-aligned box. Frames
already in --out are kept (rerun to resume); each frame has its own seed, so --workers and
--shard I/N never change a frame's bytes.

Without --mesh (or with --cuboid): a 10 x 8 x 6 cm box with one look in every frame (six
face textures seeded by its class name; the faces make its pose unambiguous), and a
distractor box in ~30% of frames.""",
            fields=(
                Field("out", "path", "data/synth-dope", "output folder", role=OUT),
                Field("n", "int", 200, "images", low=1), SEED,
                Field("width", "int", None, "image width (default: 640, or the --camera's)",
                      low=32, high=7680),
                Field("height", "int", None, "image height (default: 480, or the --camera's)",
                      low=32, high=4320),
                Field("object", "str", None, "object class (default: the mesh file's name, or "
                      "cube)"),
                Field("distance", "str", None, "MIN,MAX metres from the camera to the object's "
                      "centre (default: 0.35,0.9 for the cuboid; for a mesh, its box spans 18-60%% "
                      "of the frame)"),
                Field("mesh", "path", None, "your object's mesh (OBJ + MTL + texture beside it, "
                      "PLY, glTF/GLB)", role=IN, beside=True),
                Field("cuboid", "bool", False, "the textured-cuboid generator (the default "
                      "without --mesh)"),
                Field("scale", "float", 1.0, "(--mesh) mesh units to metres (0.001 for mm, "
                      "e.g. BOP models)", positive=True),
                Field("instances", "int", 1, "(--mesh) copies of the object per frame", low=1,
                      high=20),
                Field("distractors", "path", None, "(--mesh) folder of distractor meshes "
                      "(default: random shapes)", role=IN),
                Field("max_distractors", "int", 5, "(--mesh) up to this many distractors per "
                      "frame", low=0, high=50),
                Field("backgrounds", "path", None, "(--mesh) folder of background images, HDR "
                      "too (default: procedural)", role=IN),
                Field("fx", "float", None, "focal length in pixels (default 0.9 x width)",
                      positive=True),
                Field("fy", "float", None, "vertical focal length in pixels (default --fx)",
                      positive=True),
                Field("camera", "path", None, "(--mesh) the camera: a ROS camera_info YAML "
                      "(P, as the node uses for rectified frames) or a DOPE frame JSON; sets "
                      "the size and intrinsics", role=IN),
                Field("workers", "int", None, "(--mesh) render processes (default: one per "
                      "core, at most 8)",
                      low=1),
                Field("extras", "bool", False, "(--mesh) also write NAME.seg.png (instance "
                      "ids) and NAME.depth.png (mm, 16 bit)"),
                Field("symmetry", "path", None, "(--mesh) BOP models_info.json: label symmetric "
                      "poses "
                      "canonically", role=IN),
                Field("symmetry_id", "str", None, "(--mesh) the object's id in --symmetry (5 or "
                      "obj_000005; default: from an obj_NNNNNN mesh name)"),
                Field("shard", "str", None, "(--mesh) I/N: write frames I, I+N, ... (one "
                      "machine's share;"
                      " the shards together equal one run)"),
            ), uses_gpu=False)

INFER = Job("infer-dope", MODERN, "pose_train_py27.dope_infer:main", """Detect the object and its 6D pose in images or a video.

DOPE's post-processing as its ROS node runs it (smoothed belief peaks, affinity assignment,
cv2.solvePnP on the cuboid), with the weights' normalisation and trained scale. Writes
OUTF/detections.json, and per frame NAME.json (DOPE's annotation layout: location in m,
quaternion_xyzw, projected_cuboid) and an overlay NAME.png. --runtime melodic runs the
same code in the ROS Melodic image (Python 2.7 + torch 1.4).

Several weights, one per object, run over every frame as the node runs them, each with its
own sidecar's settings; each frame is decoded once. detections.json, the frame JSONs and the
overlays hold every object (each object's name and peaks in its own colour).""",
            fields=tuple(Field(**f) for f in job_fields.INFER_DOPE) + (GPUS,))

def infer_before_eval(args):
    """Through the launcher, eval --runtime melodic first runs infer dope in the legacy image
    on the same frames; the evaluation then scores its detections.json."""
    if args.runtime != "melodic" or args.detections:
        return None
    out = os.path.join(args.outf, "infer-melodic")
    args.detections = os.path.join(out, "detections.json")
    given = {f["name"]: getattr(args, f["name"]) for f in job_fields.DECODE
             if f["name"] != "object" and getattr(args, f["name"]) is not None}
    # Partial poses too, labelled: eval scores the node's figures and says what --partial adds.
    return "infer-dope", dict(given, weights=args.weights, images=list(args.data), outf=out,
                              object=args.object, runtime="melodic", gpus=args.gpus, partial=True)


EVAL = Job("eval-dope", MODERN, "pose_train.dope.evaluate:main", """Score DOPE weights on annotated frames: detections, 2D error, ADD(-S), ADD AUC.

Per object: detected or not, the 9 points' 2D error, translation and rotation errors, ADD on
the cuboid's corners (or --mesh; ADD-S with --symmetric). Summary: detection rate,
ADD < 0.1 diameter, ADD AUC over 0-10 cm (as DOPE reports on YCB-Video); misses count as
failures. Writes OUTF/results.md, OUTF/results.json and OUTF/worst/*.png. --runtime melodic
detects in the ROS Melodic image (infer dope) and scores those poses here.

Several weights, one per object (as the node runs them): each frame is decoded once and run
through every network; each object is scored against its own class in OUTF/OBJECT/, and
OUTF/results.md has a row per object and one over all of them.""",
           fields=(
               Field("weights", "path", None, "DOPE weights (net_epoch_XX.pth); several, one "
                     "per object, score each object against its own class", role=IN,
                     positional=True, beside=True, many=True),
               Field("data", "path", [], "annotated held-out folder, either "
                     "dialect", role=IN, many=True),
               Field("object", "str", None, "the annotations' class to score (default: the one "
                     "the weights' sidecar names, else cube); with several weights, "
                     "NAME1,NAME2,... in their order"),
               Field("outf", "path", "eval", "output folder", role=OUT),
               Field("mesh", "path", None, "object model (PLY or OBJ, in the dataset's units) "
                     "for ADD instead of the cuboid's corners", role=IN),
               Field("symmetric", "bool", False, "ADD-S: closest-point distance, for "
                     "symmetric objects (the default where the data marks the object symmetric)"),
               Field("add", "bool", False, "ADD even where the data marks the object symmetric "
                     "(BOP's models_info.json, synth dope --symmetry)"),
               Field("detections", "path", None, "score this detections.json of infer dope "
                     "instead of running the network", role=IN),
               Field("worst", "int", 8, "overlays of this many worst objects", low=0),
               Field("skip_bad", "bool", False, "score the readable frames when some frames or "
                     "annotations cannot be read (results.md says how many were skipped)"),
               MAX_PIXELS,
           ) + tuple(Field(**f) for f in job_fields.DECODE if f["name"] != "object")
           + (Field(**job_fields.RUNTIME), GPUS),
           first=infer_before_eval)


JOBS = (TRAIN, VALIDATE, SYNTH, INFER, EVAL)
