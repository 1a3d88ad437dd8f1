"""The runtime images: names, labels, and an offline, reproducible build.

A build is: fetch the hash-locked wheels on the host (docker/lock.py, pip), pack a
deterministic build context (pose_train.launcher.context), and let the engine build it
with no network. The modern image's dependencies are built once per lock and base, as their
own image (pose-train/venv:<target>-<key>), so a rebuild with an unchanged lock sends no
wheels. The built image is then probed and labelled with what it holds: its torch, its CUDA
architectures and the digest of its content manifest.
"""
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile

from pose_train import environment
from pose_train import __version__
from pose_train.errors import UserError
from pose_train.launcher import base_check, context

REPO = context.REPO
LABEL_RUNTIME = "io.pose-train.runtime"

# What each image is built from; CI overrides the base and the variant. A variant's default base
# has the Python its lock was resolved for (docker/lock.py TARGETS). The torch/CUDA labels of each
# variant are declared in the Dockerfiles too, so compose builds carry them.
IMAGES = {
    "modern": dict(dockerfile="docker/modern/Dockerfile", default_variant="cuda", variants=("cuda", "cpu"),
                   default_base={"cuda": "nvidia/cuda:13.0.1-base-ubuntu24.04",
                                 "cpu": "python:3.11-slim-bookworm"}, venv_stage=True),
    "legacy": dict(dockerfile="docker/legacy/Dockerfile", default_variant="cuda", variants=("cuda",),
                   default_base={"cuda": "ros:melodic-ros-base"}, venv_stage=False),
}
# Inside a built image: its torch and what that torch was compiled for, and the manifest digest.
PROBE = ("import json, subprocess, torch; "
         "flags = getattr(torch._C, '_cuda_getArchFlags', lambda: '')() if torch.version.cuda else ''; "
         "archs = ' '.join(sorted({'%d.%d' % divmod(int(f.split('_')[1]), 10) for f in flags.split() "
         "if f.startswith('sm_')}, key=float)); "
         "digest = subprocess.check_output(['python', '/opt/pose-train/manifest.py', 'digest'], text=True).strip(); "
         "print(json.dumps({'io.pose-train.torch.version': torch.__version__, "
         "'io.pose-train.cuda.version': torch.version.cuda or '', 'io.pose-train.cuda.archs': archs, "
         "'io.pose-train.manifest.sha256': digest}))")


def image_tag(name):
    """Tag the launcher runs; POSE_TRAIN_<NAME>_IMAGE overrides it (e.g. a registry copy)."""
    return os.environ.get({"modern": environment.MODERN_IMAGE, "legacy": environment.LEGACY_IMAGE}[name], "pose-train/%s:%s" % (name, __version__))


def wheelhouse_dir(target):
    """Where the locked wheels for ``target`` are kept; POSE_TRAIN_WHEELHOUSE moves them (CI caches)."""
    root = os.environ.get(environment.WHEELHOUSE) or os.path.join(REPO, ".wheelhouse")
    return os.path.join(root, target)


def lock_target(name, variant):
    return "legacy" if name == "legacy" else "modern-%s" % variant


def lock_module():
    """docker/lock.py, the one list of targets (their Python, platforms and lock files)."""
    spec = importlib.util.spec_from_file_location("pose_train_lock", os.path.join(REPO, "docker", "lock.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fetch_wheels(target, wheelhouse):
    """Download the locked wheels on the host (pip honours the host's proxy and CA set-up)."""
    cmd = [sys.executable, os.path.join(REPO, "docker", "lock.py"), "fetch", target, "--dest", wheelhouse]
    if subprocess.call(cmd) != 0:
        raise UserError("could not fetch the wheels locked in docker/ for %s; check network/proxy "
                        "(pip download) or pass --wheelhouse DIR with the files" % target)


def venv_tag(target, base_digest, dockerfile):
    """The dependency image's tag: one per lock, base and dependency stages (the Dockerfile up to
    its `AS venv-built` line), so a change to any of them rebuilds it and nothing else does."""
    lock = lock_module()
    stages = open(os.path.join(REPO, dockerfile), "rb").read().split(b" AS venv-built")[0]
    digest = hashlib.sha256()
    for part in (open(lock.lock_path(target), "rb").read(), base_digest.encode(), stages):
        digest.update(hashlib.sha256(part).digest())
    return "pose-train/venv:%s-%s" % (target, digest.hexdigest()[:12])


def build(name, base=None, variant=None, wheelhouse=None, tag=None, no_cache=False, quiet=False):
    """Build image ``name`` ('modern' | 'legacy'); returns the tag."""
    from pose_train.launcher.docker_engine import connect
    if name not in IMAGES:
        raise UserError("unknown image %r: choose 'modern' or 'legacy'" % name)
    spec = IMAGES[name]
    variant = variant or spec["default_variant"]
    if variant not in spec["variants"]:
        raise UserError("image %s has no variant %r; choose %s" % (name, variant, " or ".join(spec["variants"])))
    client = connect()
    base = base or spec["default_base"][variant]
    target = lock_target(name, variant)
    if wheelhouse and os.path.exists(wheelhouse) and not os.path.isdir(wheelhouse):
        raise UserError("--wheelhouse %s is a file; pass a folder (it is made if missing)" % wheelhouse)
    wheelhouse = os.path.abspath(wheelhouse or wheelhouse_dir(target))
    epoch = context.source_date_epoch()
    args = context.build_args(variant, base, base_check.ensure_base(client, base), epoch)
    tag = tag or image_tag(name)
    if spec["venv_stage"]:
        base_check.check_python(client, base, variant, lock_module())
        args["VENV_FROM"] = _venv_image(client, spec, target, wheelhouse, args, no_cache, quiet)
        wheelhouse = None
    else:
        fetch_wheels(target, wheelhouse)
    built = _engine_build(client, spec["dockerfile"], target, wheelhouse, args, quiet, nocache=no_cache)
    base_check.say_replaced_variant(client, tag, variant)
    if spec["venv_stage"]:
        _stamp(client, built, tag)
        client.images.prune(filters={"dangling": True, "label": "io.pose-train.stage=venv"})
    else:
        _tag(client, built, tag)
        client.images.prune(filters={"dangling": True, "label": "io.pose-train.stage=install"})
    print("built %s" % tag)
    return tag


def _venv_image(client, spec, target, wheelhouse, args, no_cache, quiet):
    """The image holding /opt/venv for this lock and base, built (from the wheelhouse) if missing."""
    import docker.errors
    name = venv_tag(target, args["BASE_DIGEST"], spec["dockerfile"])
    if not no_cache:
        try:
            client.images.get(name)
            print("using dependency image %s (lock, base and dependency stages unchanged: no wheels "
                  "needed)" % name)
            return name
        except docker.errors.ImageNotFound:
            pass
    fetch_wheels(target, wheelhouse)
    owner = {"io.pose-train.venv.target": target, "io.pose-train.venv.base": args["BASE_DIGEST"]}
    built = _engine_build(client, spec["dockerfile"], target, wheelhouse, dict(args, VENV_FROM="venv"), quiet,
                          nocache=no_cache, stage="venv", labels=owner)
    _drop_stale_venvs(client, owner, keep=built)
    _tag(client, built, name)
    return name


def _tag(client, image_id, name):
    from docker.utils import parse_repository_tag
    repository, version = parse_repository_tag(name)
    client.images.get(image_id).tag(repository, version)


def _drop_stale_venvs(client, owner, keep):
    """Remove the earlier dependency images of this target on this base (an older lock or
    Dockerfile; 2-8 GB each). Others (another base, another checkout's target) are left."""
    import docker.errors
    wanted = ["%s=%s" % kv for kv in sorted(owner.items())]
    for image in client.images.list(name="pose-train/venv", filters={"label": wanted}):
        if image.id != keep:
            try:
                client.images.remove(image.id)
            except docker.errors.APIError:
                pass  # in use; `docker image prune` removes it later


def _engine_build(client, dockerfile, target, wheelhouse, args, quiet, nocache=False, stage=None, labels=None):
    """One engine build of ``dockerfile`` (up to ``stage``); returns the image id."""
    with tempfile.TemporaryFile() as ctx:
        context.write_context(ctx, target, wheelhouse, int(args["SOURCE_DATE_EPOCH"]))
        ctx.seek(0)
        stream = client.api.build(fileobj=ctx, custom_context=True, dockerfile=dockerfile, buildargs=args,
                                  rm=True, forcerm=True, nocache=nocache, decode=True, pull=False, target=stage,
                                  labels=labels)
        return _follow_build(stream, quiet)


def _stamp(client, image_id, tag):
    """Label the built image with what it holds (probed inside it), and tag it."""
    probed = json.loads(client.containers.run(image_id, ["-c", PROBE], entrypoint=["python"], remove=True))
    declared = client.images.get(image_id).labels or {}
    for key, value in sorted(probed.items()):
        if key in declared and declared[key] != value:
            print("pose-train: warning: the Dockerfile declares %s=%r, the built image has %r; labelled %r "
                  "(fix the Dockerfile's variant labels)" % (key, declared[key], value, value), file=sys.stderr)
    text = "FROM %s\nLABEL %s\n" % (image_id, " ".join("%s=%s" % (k, json.dumps(v)) for k, v in sorted(probed.items())))
    with tempfile.TemporaryFile() as ctx:
        context.write_dockerfile_context(ctx, text)
        ctx.seek(0)
        stream = client.api.build(fileobj=ctx, custom_context=True, tag=tag, rm=True, decode=True, pull=False)
        _follow_build(stream, quiet=True)


def _follow_build(stream, quiet):
    """Print the build's output; return the built image's id. A failed step is reported by its
    last output line (what the step said), not by the whole shell command."""
    image_id, said = None, ""
    for chunk in stream:
        if "error" in chunk:
            error = chunk["error"].strip()
            code = re.search(r"returned a non-zero code: (\d+)$", error)
            raise UserError("image build failed: %s" % ("%s (the step exited %s)" % (said, code.group(1))
                                                        if code and said else error))
        line = re.sub(r"\x1b\[[0-9;]*m", "", chunk.get("stream", "")).strip()
        if line and not line.startswith(("Step ", "---> ", "Removing intermediate", "Running in")):
            said = line
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        text = chunk.get("stream", "")
        if text.startswith("Successfully built "):
            image_id = image_id or text.split()[-1]
        if text and not quiet:
            sys.stdout.write(text)
            sys.stdout.flush()
    if not image_id:
        raise UserError("image build failed: the engine reported no image")
    return image_id


def labels(client, tag):
    """The image's labels, or None when the image is missing."""
    import docker.errors
    try:
        return client.images.get(tag).labels or {}
    except docker.errors.ImageNotFound:
        return None


def list_images():
    from pose_train.launcher.docker_engine import connect
    client = connect()
    rows = []
    for image in client.images.list(filters={"label": LABEL_RUNTIME}):
        lab = image.labels
        # The label is the source's commit time (reproducible builds); the engine's Created is
        # when this machine built it. Both, named: one was read as the other.
        rows.append((", ".join(image.tags) or image.short_id, lab.get(LABEL_RUNTIME, "?"),
                     lab.get("io.pose-train.torch.version", "?"), lab.get("io.pose-train.cuda.version") or "cpu",
                     lab.get("org.opencontainers.image.created", "?"),
                     str(image.attrs.get("Created") or "?")[:19]))
    out = io.StringIO()
    line = "%-34s %-8s %-12s %-6s %-25s %s\n"
    out.write(line % ("IMAGE", "RUNTIME", "TORCH", "CUDA", "SOURCE (commit time)", "BUILT"))
    for row in sorted(rows):
        out.write(line % row)
    sys.stdout.write(out.getvalue())
    return rows


def build_job(args):
    """`pose-train images build` (declared in pose_train.jobs.host)."""
    build(args.name, base=args.base, variant=args.variant, wheelhouse=args.wheelhouse,
          tag=args.tag, no_cache=args.no_cache)
    return 0


def list_job(args):
    list_images()
    return 0
