"""The build context the engine gets: a deterministic tar (sorted, owner and mtime fixed) of the
sources, the Dockerfiles and, for an image's dependency stage, its wheelhouse."""
import io
import os
import subprocess
import tarfile
import time

from pose_train import __version__

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTEXT_PATHS = ["pyproject.toml", "README.md", "pose_train", "pose_train_py27", "docker"]


def source_date_epoch():
    """SOURCE_DATE_EPOCH if set, else the last commit's time, else 0: never 'now'."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%ct"], capture_output=True, text=True)
        return int(out.stdout.strip() or 0)
    except (OSError, ValueError):
        return 0


def git_revision():
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def build_args(variant, base, base_digest, epoch):
    return {
        "BASE_IMAGE": base, "BASE_DIGEST": base_digest, "VARIANT": variant, "VERSION": __version__,
        "CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)), "REVISION": git_revision(),
        "SOURCE_DATE_EPOCH": str(epoch),
    }


def write_context(fileobj, target, wheelhouse, epoch):
    """A deterministic tar of the sources and Dockerfiles, with ``wheelhouse`` (or an empty
    folder when None: the dependency stage is already built) at .wheelhouse/<target>."""
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
        if wheelhouse:
            _add_tree(tar, wheelhouse, wheel_dir, epoch)


def write_dockerfile_context(fileobj, text):
    """A context holding only a Dockerfile (the label stamp on a built image)."""
    data = text.encode()
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _add_tree(tar, root, arcroot, epoch):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", ".pytest_cache"))
        for fname in sorted(filenames):
            if fname.endswith(".pyc"):
                continue
            path = os.path.join(dirpath, fname)
            _add_file(tar, path, os.path.join(arcroot, os.path.relpath(path, root)), epoch)


def _add_file(tar, path, arcname, epoch):
    """Owner and mtime fixed, so the same tree always packs to the same bytes."""
    info = tar.gettarinfo(path, arcname)
    info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
    with open(path, "rb") as f:
        tar.addfile(info, f)
