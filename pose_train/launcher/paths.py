"""Host paths in job arguments -> validated bind mounts and container paths.

Every host path is mounted at ``/host`` + its absolute path, so a path in a log or
an error message inside the container still reads like the one the user typed.
"""
import os
import re
from dataclasses import dataclass

from pose_train.environment import HOST_PREFIX
from pose_train.errors import UserError
from pose_train.jobs.spec import check_inputs


@dataclass(frozen=True)
class BindMount:
    source: str   # absolute host path
    target: str   # container path
    read_only: bool


def container_path(host_path):
    return HOST_PREFIX + os.path.abspath(host_path)


# /host at the start of a path (not inside a word or another path), followed by the rest of it.
_IN_CONTAINER = re.compile(rb"(?<![\w.~/-])" + re.escape(HOST_PREFIX.encode()) + rb"(?=/)")


def host_paths_in(text):
    """A job's output (bytes) with its container paths (/host/home/me/out) as the host's
    (/home/me/out): a "continue with:" line or a summary then works when pasted on the host."""
    return _IN_CONTAINER.sub(b"", text)


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def plan_mounts(job, args, create=True):
    """Validate path arguments, create output folders (unless ``create`` is False, as for
    --dry-run), return (container args, mounts)."""
    new_args, mounts = dict(args), {}
    check_inputs(job, args)
    for name in job.inputs:
        paths = [p for p in _as_list(args.get(name)) if not job.is_word(name, p)]
        for path in paths:
            # A weights file's sidecar (net_epoch_10.json) is read beside it: mount its folder.
            beside = job.field(name).beside and os.path.isfile(path)
            mounts.setdefault(os.path.dirname(os.path.abspath(path)) if beside
                              else os.path.abspath(path), True)
        if paths and len(paths) == len(_as_list(args[name])):
            mapped = [container_path(p) for p in paths]
            new_args[name] = mapped if isinstance(args[name], (list, tuple)) else mapped[0]
    for name, folder in output_folders(job, args):
        if name in job.outputs and os.path.exists(folder) and not os.path.isdir(folder):
            raise UserError("--%s %s is a file; pass a folder (it is made if missing)" % (name, args[name]))
        if create:
            _make_dir(folder, name)
        mounts[folder] = False
        new_args[name] = container_path(args[name])
    for name in job.inputs:
        for path in _as_list(args.get(name)):
            if not job.is_word(name, path) and os.path.isdir(path):
                _refuse_links_leaving(path, name, list(mounts))
    binds = [BindMount(src, container_path(src), ro) for src, ro in sorted(mounts.items())]
    return new_args, binds


def output_folders(job, args):
    """(flag, folder) the job writes into: its output folders, and each output file's parent."""
    folders = [(n, os.path.abspath(args[n])) for n in job.outputs if args.get(n) is not None]
    return folders + [(n, os.path.dirname(os.path.abspath(args[n]))) for n in job.out_files
                      if args.get(n) is not None]


def _inside(path, folders):
    return any(path == f or path.startswith(os.path.join(f, "")) for f in folders)


def _refuse_links_leaving(folder, flag, mounted):
    """Folders are mounted at /host + their path, so in the container an absolute link, or one
    whose target is outside every mounted folder, dangles, and the job could only call the file
    missing. Name such links here, where they resolve, with the fix."""
    real_mounts = [os.path.realpath(m) for m in mounted]
    leaving = []
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(top, name)
            if not os.path.islink(path) or not os.path.exists(path):
                continue   # dangling links are the job's to report
            if os.path.isabs(os.readlink(path)) \
                    or not _inside(os.path.realpath(path), real_mounts):
                leaving.append(path)
    if leaving:
        raise UserError("--%s %s: %d link(s) would dangle in the container (absolute, or pointing "
                        "outside the mounted folders), first: %s -> %s; copy the files in (cp -rL "
                        "SRC DST), make the links relative within the folder, or run with --local"
                        % (flag, folder, len(leaving), leaving[0], os.readlink(leaving[0])))


def _make_dir(folder, flag):
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UserError("--%s %s: cannot create the folder (%s)" % (flag, folder, err.strerror))
    if not os.access(folder, os.W_OK):
        raise UserError("--%s %s: folder is not writable by you; choose another or fix its owner" % (flag, folder))
