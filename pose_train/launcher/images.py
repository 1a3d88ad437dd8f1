"""The runtime images: names, labels, and an offline, reproducible build.

A build is: fetch the hash-locked wheels on the host (docker/lock.py, pip), pack a
deterministic build context (sorted, fixed mtimes), and let the engine build it
with no network. The same inputs give the same context, lock and labels.
"""
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time

from pose_train import __version__
from pose_train.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABEL_RUNTIME = "io.pose-train.runtime"

# What each image is built from; CI overrides the base and the variant. The torch/CUDA
# labels of each variant are written in the Dockerfiles, so compose builds carry them too.
IMAGES = {
    "modern": dict(dockerfile="docker/modern/Dockerfile", default_variant="cuda",
                   default_base="nvidia/cuda:13.0.1-base-ubuntu24.04", variants=("cuda", "cpu")),
    "legacy": dict(dockerfile="docker/legacy/Dockerfile", default_variant="cuda",
                   default_base="ros:melodic-ros-base", variants=("cuda",)),
}
CONTEXT_PATHS = ["pyproject.toml", "README.md", "pose_train", "pose_train_py27", "docker"]


def image_tag(name):
    """Tag the launcher runs; POSE_TRAIN_<NAME>_IMAGE overrides it (e.g. a registry copy)."""
    return os.environ.get("POSE_TRAIN_%s_IMAGE" % name.upper(), "pose-train/%s:%s" % (name, __version__))


def wheelhouse_dir(target):
    """Where the locked wheels for ``target`` are kept; POSE_TRAIN_WHEELHOUSE moves them (CI caches)."""
    root = os.environ.get("POSE_TRAIN_WHEELHOUSE") or os.path.join(REPO, ".wheelhouse")
    return os.path.join(root, target)


def lock_target(name, variant):
    return "legacy" if name == "legacy" else "modern-%s" % variant


def source_date_epoch():
    """SOURCE_DATE_EPOCH if set, else the last commit's time, else 0: never 'now'."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%ct"], capture_output=True, text=True)
        return int(out.stdout.strip() or 0)
    except (OSError, ValueError):
        return 0


def _git_revision():
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def build_args(variant, base, base_digest, epoch):
    return {
        "BASE_IMAGE": base, "BASE_DIGEST": base_digest, "VARIANT": variant, "VERSION": __version__,
        "CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)), "REVISION": _git_revision(),
        "SOURCE_DATE_EPOCH": str(epoch),
    }


def _add_tree(tar, root, arcroot, epoch):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".pytest_cache"))
        for fname in sorted(filenames):
            if fname.endswith(".pyc"):
                continue
            path = os.path.join(dirpath, fname)
            _add_file(tar, path, os.path.join(arcroot, os.path.relpath(path, root)), epoch)


def write_context(fileobj, target, wheelhouse, epoch):
    """A deterministic tar of the sources, the Dockerfiles and the wheelhouse."""
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in CONTEXT_PATHS:
            path = os.path.join(REPO, rel)
            if os.path.isdir(path):
                _add_tree(tar, path, rel, epoch)
            else:
                _add_file(tar, path, rel, epoch)
        wheel_dir = ".wheelhouse/%s" % target
        info = tarfile.TarInfo(wheel_dir)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
        tar.addfile(info)
        _add_tree(tar, wheelhouse, wheel_dir, epoch)


def _add_file(tar, path, arcname, epoch):
    """Owner and mtime fixed, so the same tree always packs to the same bytes."""
    info = tar.gettarinfo(path, arcname)
    info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
    with open(path, "rb") as f:
        tar.addfile(info, f)


def fetch_wheels(target, wheelhouse):
    """Download the locked wheels on the host (pip honours the host's proxy and CA set-up)."""
    cmd = [sys.executable, os.path.join(REPO, "docker", "lock.py"), "fetch", target, "--dest", wheelhouse]
    if subprocess.call(cmd) != 0:
        raise UserError("could not fetch the wheels locked in docker/ for %s; check network/proxy "
                        "(pip download) or pass --wheelhouse DIR with the files" % target)


def build(name, base=None, variant=None, wheelhouse=None, tag=None, no_cache=False, quiet=False):
    """Build image ``name`` ('modern' | 'legacy'); returns the tag."""
    from pose_train.launcher.engine import connect
    if name not in IMAGES:
        raise UserError("unknown image %r: choose 'modern' or 'legacy'" % name)
    spec = IMAGES[name]
    variant = variant or spec["default_variant"]
    if variant not in spec["variants"]:
        raise UserError("image %s has no variant %r; choose from %s" % (name, variant, sorted(spec["variants"])))
    client = connect()
    base = base or spec["default_base"]
    target = lock_target(name, variant)
    wheelhouse = os.path.abspath(wheelhouse or wheelhouse_dir(target))
    fetch_wheels(target, wheelhouse)
    epoch = source_date_epoch()
    tag = tag or image_tag(name)
    with tempfile.TemporaryFile() as context:
        write_context(context, target, wheelhouse, epoch)
        context.seek(0)
        args = build_args(variant, base, _base_digest(client, base), epoch)
        stream = client.api.build(fileobj=context, custom_context=True, dockerfile=spec["dockerfile"],
                                  tag=tag, buildargs=args, rm=True, forcerm=True, nocache=no_cache,
                                  decode=True, pull=False)
        _follow_build(stream, quiet)
    print("built %s" % tag)
    return tag


def _base_digest(client, base):
    """The base's repo digest when it came from a registry, else its local image id."""
    import docker.errors
    try:
        image = client.images.get(base)
    except docker.errors.ImageNotFound:
        return "unknown"  # the engine pulls it during the build (users' machines)
    return (image.attrs.get("RepoDigests") or [image.id])[0].split("@")[-1]


def _follow_build(stream, quiet):
    for chunk in stream:
        if "error" in chunk:
            raise UserError("image build failed: %s" % chunk["error"].strip())
        text = chunk.get("stream", "")
        if text and not quiet:
            sys.stdout.write(text)
            sys.stdout.flush()


def labels(client, tag):
    """The image's labels, or None when the image is missing."""
    import docker.errors
    try:
        return client.images.get(tag).labels or {}
    except docker.errors.ImageNotFound:
        return None


def list_images():
    from pose_train.launcher.engine import connect
    client = connect()
    rows = []
    for image in client.images.list(filters={"label": LABEL_RUNTIME}):
        lab = image.labels
        rows.append((", ".join(image.tags) or image.short_id, lab.get(LABEL_RUNTIME, "?"),
                     lab.get("io.pose-train.torch.version", "?"), lab.get("io.pose-train.cuda.version") or "cpu",
                     lab.get("org.opencontainers.image.created", "?")))
    out = io.StringIO()
    out.write("%-34s %-8s %-12s %-6s %s\n" % ("IMAGE", "RUNTIME", "TORCH", "CUDA", "CREATED"))
    for row in sorted(rows):
        out.write("%-34s %-8s %-12s %-6s %s\n" % row)
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
