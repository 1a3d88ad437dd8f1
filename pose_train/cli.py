"""pose-train command line (python-fire). Thin: every job is a row of pose_train.jobs.

Run on the host, a job command starts the right Docker image and runs itself there
with ``--local``; inside an image (or with ``--local``) it runs in this process.
"""
import os
import sys

from pose_train.errors import UserError, interrupt_exit_code
from pose_train.jobs import JOBS, resolve_entry


_EXIT = {"code": 0}  # fire prints return values, so exit codes travel beside it


class _Context:
    def __init__(self, local, dry_run):
        # Inside our images the CLI always runs in-process (the image sets this).
        self.local = bool(local) or os.environ.get("POSE_TRAIN_LOCAL") == "1"
        self.dry_run = bool(dry_run)

    def run(self, job_name, args):
        job = JOBS[job_name]
        if self.local:
            from types import SimpleNamespace
            code = resolve_entry(job)(SimpleNamespace(**args)) or 0
        else:
            from pose_train.launcher.run import launch
            code = launch(job, args, dry_run=self.dry_run)
        _EXIT["code"] = code
        return None if code == 0 else code


def _seq(value):
    """python-fire turns ``01`` into 1 and ``1`` into 1: take both, give back an int."""
    try:
        return int(str(value).lstrip("0") or "0")
    except ValueError:
        raise UserError("--seq must be a LINEMOD object number such as 1 or 01, got %r" % (value,))


def _paths(value):
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


class Train:
    """Train a network (runs in the modern image)."""

    def __init__(self, ctx):
        self._ctx = ctx

    def dope(self, data=None, object="cube", outf="output", epochs=30, net=None, save=False,
             batchsize=32, lr=1e-4, workers=None, gpus=None, resume=None, time_limit=None,
             seed=0, imagesize=400, pretrained=None, strict=False, sigma=None, amp="auto",
             compile=False, synth_n=200, decode_cache="auto"):
        """Train DOPE on one object; writes net_epoch_XX.pth (+ .json) and training_state.pth.

        --data DIR (repeatable; default: a synthetic set of --synth_n images, generated once)
        --object NAME (case-insensitive)  --outf DIR  --epochs N (counted from where this run
        starts)  --net WEIGHTS_OR_STATE (weights: numbering continues from the file name;
        training_state.pth: exact resume)  --resume auto (newest state in --outf)
        --save (PNG grids of augmented batches)  --batchsize 32 (per process)  --lr 1e-4
        --workers N  --gpus N  --time_limit HOURS  --seed 0  --imagesize 400 (crop)
        --pretrained VGG19.pth (local ImageNet weights)  --strict (bad data is fatal)
        --sigma PX (belief Gaussian, crop pixels; 4)  --amp auto|bf16|fp16|off  --compile
        --decode_cache auto|off (keep decoded frames on disk after epoch 1)
        Several nodes: torchrun --nnodes N --nproc_per_node G --rdzv_backend c10d
        --rdzv_endpoint HOST:PORT -m pose_train --local train dope ... on every node.
        """
        self._ctx.run("train-dope", dict(
            data=_paths(data), object=str(object), outf=str(outf), epochs=int(epochs),
            net=None if net is None else str(net), save=bool(save), batchsize=int(batchsize),
            lr=float(lr), workers=None if workers is None else int(workers),
            gpus=None if gpus is None else int(gpus), resume=resume,
            time_limit=None if time_limit is None else float(time_limit), seed=int(seed),
            imagesize=int(imagesize), pretrained=None if pretrained is None else str(pretrained),
            strict=bool(strict), sigma=None if sigma is None else float(sigma), amp=str(amp),
            compile=bool(compile), synth_n=int(synth_n), decode_cache=str(decode_cache)))

    def keypoints(self, nClasses=None, seq=1, kptype="sift", optMethod="rmsprop", trainBatch=48,
                  dataset="linemod", datatype="gt", loadModel=None, addDPG=False, data="data",
                  outf="output", epochs=50, lr=1e-3, dpg_from_epoch=None, arch="resnet101",
                  resume=None, seed=0, pretrained=None, lr_schedule="none", inputResH=320,
                  inputResW=256, hmGauss=1.0, amp="auto", compile=False, time_limit=None,
                  snapshot=10, train_occluded=False, flip=False, gpus=None):
        """Train the keypoint localizer (FastPose) on prepared LINEMOD keypoints.

        Seed flags: --nClasses K (default: from the prepared folder) --seq S --kptype T
        --optMethod rmsprop|adam|sgd|nag --trainBatch N --dataset linemod --datatype gt
        --loadModel WEIGHTS (.pkl/.pth, strict) --addDPG.
        --data DIR (prepare's --outf)  --outf DIR  --epochs N  --lr 1e-3
        --dpg_from_epoch E: the first E epochs without DPG, then from the best model with DPG
        --arch resnet101|resnet50  --pretrained IMAGENET_RESNET.pth (local file)
        --lr_schedule none|step|cosine  --inputResH 320 --inputResW 256 (multiples of 32)
        --hmGauss SIGMA  --amp auto|bf16|off (bf16 on CUDA)  --compile  --time_limit HOURS
        --resume auto|STATE  --snapshot N (model_N.pkl every N epochs, 0 = none)
        --train_occluded (also learn hidden keypoints, as kp6d)  --flip (mirror; off: see docs)
        --gpus N (one process per GPU, DDP; default every visible GPU)
        """
        data = _paths(data)  # the root CLI turns --data into a list (DOPE takes several)
        if len(data) != 1:
            raise UserError("--data takes one folder here, got %d" % len(data))
        self._ctx.run("train-keypoints", dict(
            nClasses=None if nClasses is None else int(nClasses), seq=_seq(seq), kptype=str(kptype).lower(),
            optMethod=str(optMethod).lower(), trainBatch=int(trainBatch), dataset=str(dataset).lower(),
            datatype=str(datatype).lower(), loadModel=None if loadModel is None else str(loadModel),
            addDPG=bool(addDPG), data=data[0], outf=str(outf), epochs=int(epochs), lr=float(lr),
            dpg_from_epoch=None if dpg_from_epoch is None else int(dpg_from_epoch), arch=str(arch).lower(),
            resume=None if resume is None else str(resume), seed=int(seed),
            pretrained=None if pretrained is None else str(pretrained), lr_schedule=str(lr_schedule).lower(),
            inputResH=int(inputResH), inputResW=int(inputResW), hmGauss=float(hmGauss),
            amp=str(amp).lower(), compile=bool(compile),
            time_limit=None if time_limit is None else float(time_limit), snapshot=int(snapshot),
            train_occluded=bool(train_occluded), flip=bool(flip),
            gpus=None if gpus is None else int(gpus)))


class Validate:
    """Check a dataset before training: report + PNG grids with cuboids drawn."""

    def __init__(self, ctx):
        self._ctx = ctx

    def dope(self, data=None, object="cube", outf="output", imagesize=400, strict=False, seed=0):
        """Write a data report and PNG grids of augmented samples with cuboids and beliefs."""
        self._ctx.run("validate-dope", dict(
            data=_paths(data), object=str(object), outf=str(outf), imagesize=int(imagesize),
            strict=bool(strict), seed=int(seed)))


class Synth:
    """Write synthetic datasets (no download needed)."""

    def __init__(self, ctx):
        self._ctx = ctx

    def dope(self, out="data/synth-dope", n=200, seed=0, width=640, height=480, object="cube"):
        """Synthetic NViSII-format DOPE dataset: textured cuboids over random backgrounds."""
        self._ctx.run("synth-dope", dict(out=str(out), n=int(n), seed=int(seed),
                                                width=int(width), height=int(height),
                                                object=str(object)))

    def linemod(self, out="data/synth-linemod", n=60, seq=1, seed=0, width=640, height=480):
        """Synthetic LINEMOD sequence in the BOP layout (textured mesh, exact poses).

        --out DIR  --n FRAMES  --seq OBJECT_ID  --seed N  --width 640 --height 480
        """
        self._ctx.run("synth-linemod", dict(out=str(out), n=int(n), seq=_seq(seq), seed=int(seed),
                                            width=int(width), height=int(height)))


class Prepare:
    """Prepare training annotations."""

    def __init__(self, ctx):
        self._ctx = ctx

    def keypoints(self, seq=1, kptype="sift", kpnum=17, data="data", outf="output", split=None,
                  test_ratio=0.2, seed=0, crop_size=384, context=2.0):
        """Designate keypoints on a LINEMOD object and write per-frame annotations.

        --seq S (1 or 01)  --kptype sift|fps|cluster|corner|random  --kpnum K (corner: 9)
        --data LINEMOD_ROOT (BOP or SIXD layout)  --outf DIR (writes OUTF/kp_SS_KPTYPE_K/)
        --split FILE (JSON {"train": [...]} or training ids one a line; else --test_ratio, --seed)
        --crop_size S (stored context crops, pixels)  --context C (crop side / box side)
        """
        data = _paths(data)  # the root CLI turns --data into a list (DOPE takes several)
        if len(data) != 1:
            raise UserError("--data takes one folder here, got %d" % len(data))
        self._ctx.run("prepare-keypoints", dict(
            seq=_seq(seq), kptype=str(kptype).lower(), kpnum=int(kpnum), data=data[0],
            outf=str(outf), split=None if split is None else str(split),
            test_ratio=float(test_ratio), seed=int(seed), crop_size=int(crop_size),
            context=float(context)))


class Eval:
    """Evaluate trained networks."""

    def __init__(self, ctx):
        self._ctx = ctx

    def keypoints(self, model, data="data", outf="output", seq=1, kptype="sift", detections=None,
                  topk=None, seed=0, boxes="jitter", inputResH=None, inputResW=None, pck_alpha=0.05):
        """PnP from predicted keypoints: PCK, 2D projection (<5 px), ADD(-S) (<0.1 d).

        MODEL: FastPose weights (arch and K read from them)  --data DIR (prepare's --outf)
        --seq S --kptype T  --outf DIR (results.md per-object table, overlay PNG)
        --boxes jitter|gt (ground truth, DPG-jittered by default)  --detections FILE.json
        --topk N (PnP keypoints; default 3/4 of K)  --inputResH --inputResW (default: the
        size in MODEL's json sidecar, else 320x256)
        --pck_alpha A (PCK radius = A * longer box side)  --seed N (box jitter)
        """
        data = _paths(data)  # the root CLI turns --data into a list (DOPE takes several)
        if len(data) != 1:
            raise UserError("--data takes one folder here, got %d" % len(data))
        self._ctx.run("eval-keypoints", dict(
            model=str(model), data=data[0], outf=str(outf), seq=_seq(seq), kptype=str(kptype).lower(),
            detections=None if detections is None else str(detections),
            topk=None if topk is None else int(topk), seed=int(seed), boxes=str(boxes).lower(),
            inputResH=None if inputResH is None else int(inputResH),
            inputResW=None if inputResW is None else int(inputResW), pck_alpha=float(pck_alpha)))


class Images:
    """Build and list the runtime images."""

    def __init__(self, ctx):
        self._ctx = ctx

    def build(self, name="modern", base=None, variant=None, wheelhouse=None, tag=None, no_cache=False):
        """Build 'modern' or 'legacy' (--base IMAGE, --variant cuda|cpu, --wheelhouse DIR for offline)."""
        from pose_train.launcher import images
        images.build(str(name), base=base, variant=variant, wheelhouse=wheelhouse, tag=tag,
                     no_cache=bool(no_cache))

    def list(self):
        """List pose-train images with their runtime labels."""
        from pose_train.launcher import images
        images.list_images()


class PoseTrain:
    """pose-train: train 6D object-pose networks on a modern GPU, run them on ROS Melodic.

    Global flags: --local (run in this process, no Docker), --dry_run (print the docker command).
    """

    def __init__(self, local=False, dry_run=False):
        self._ctx = _Context(local, dry_run)
        self.train = Train(self._ctx)
        self.validate = Validate(self._ctx)
        self.synth = Synth(self._ctx)
        self.prepare = Prepare(self._ctx)
        self.eval = Eval(self._ctx)
        self.images = Images(self._ctx)

    def convert(self, src, to="melodic", out=None, model="auto", keep_prefix=False,
                strip_prefix=False, verify=False, format="pth", trust=False):
        """Convert a checkpoint for ROS Melodic (--to melodic) or modern torch (--to modern).

        --verify loads the result in the real Python 2.7 + torch 1.4 runtime and compares outputs.
        """
        from pose_train.launcher.paths import default_convert_out
        to = str(to).lower()
        if to not in ("melodic", "modern"):
            raise UserError("--to must be 'melodic' or 'modern', got %r" % (to,))
        out = str(out) if out else default_convert_out(str(src), to, str(format))
        args = dict(src=str(src), to=to, out=out, model=str(model), keep_prefix=bool(keep_prefix),
                    strip_prefix=bool(strip_prefix), verify=bool(verify), format=str(format),
                    trust=bool(trust))
        failed = self._ctx.run("convert", args)
        if not failed and verify and not self._ctx.local:
            self._ctx.run("verify-melodic", dict(ckpt=out, reference=out + ".parity.pt",
                                                 model=str(model)))

    def verify(self, ckpt, reference=None, model="auto", gpus=0):
        """Load CKPT exactly as the ROS Melodic node does (py2.7 + torch 1.4) and compare outputs.

        --gpus 1 runs the forward pass on a GPU, refused when torch 1.4 has no kernels for it.
        """
        if reference is None and os.path.exists(str(ckpt) + ".parity.pt"):
            reference = str(ckpt) + ".parity.pt"
        # Without a reference the verifier still loads the file strictly as the node does.
        self._ctx.run("verify-melodic", dict(
            ckpt=str(ckpt), reference=None if reference is None else str(reference), model=str(model),
            gpus=int(gpus)))

    def inspect(self, ckpt, trust=False):
        """Format, pickle protocol, referenced globals, tensors and which runtimes can load CKPT."""
        self._ctx.run("inspect", dict(ckpt=str(ckpt), trust=bool(trust)))

    def doctor(self):
        """Report GPU (NVML), Docker engine and image state, each with the fix when broken."""
        from pose_train.launcher.doctor import doctor
        _EXIT["code"] = doctor()


def _pop_globals(argv):
    """Take --local / --dry-run from anywhere on the line (they belong to no one command)."""
    flags = {"local": False, "dry_run": False}
    rest = []
    for arg in argv:
        key = arg.split("=")[0].replace("-", "_").lstrip("_")
        if key in flags and arg.startswith("--"):
            value = arg.split("=", 1)[1].lower() if "=" in arg else "true"
            flags[key] = value not in ("0", "false", "no")
        else:
            rest.append(arg)
    return flags, rest


def _collapse_repeated(argv, names=("--data",)):
    """``--data A --data B`` -> ``--data=["A","B"]``: fire keeps only the last repeat."""
    import json
    values, rest = {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, val = arg.partition("=")
        if key in names:
            if not eq:
                if i + 1 >= len(argv):
                    raise UserError("%s needs a value" % key)
                val, i = argv[i + 1], i + 1
            if key not in values:
                rest.append(key)
            values.setdefault(key, []).append(val)
        else:
            rest.append(arg)
        i += 1
    return [("%s=%s" % (a, json.dumps(values[a])) if a in values else a) for a in rest]


def main(argv=None):
    """Entry point: the one error boundary. UserError -> one line on stderr, non-zero exit."""
    # fire's help inspects docstrings with IPython when it is importable, which costs ~0.25 s
    # of --help on machines that have it; its plain fallback gives the same text.
    sys.modules.setdefault("IPython", None)
    import fire
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        flags, argv = _pop_globals(argv)
        fire.Fire(PoseTrain(**flags), command=_collapse_repeated(argv), name="pose-train")
    except UserError as err:
        print("pose-train: error: %s" % err, file=sys.stderr)
        sys.exit(err.code)
    except KeyboardInterrupt as err:
        print("pose-train: interrupted", file=sys.stderr)
        sys.exit(interrupt_exit_code(err))
    if _EXIT["code"]:
        sys.exit(_EXIT["code"])


if __name__ == "__main__":
    main()
