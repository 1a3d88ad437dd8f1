"""ImageNet trunks as torchvision publishes them, from torch's own hub cache.

DOPE's recipe starts from ImageNet VGG-19, kp6d's from ImageNet ResNet. Training never
downloads: ``--pretrained imagenet`` (the default when the file is cached) reads
``$TORCH_HOME/hub/checkpoints/NAME-HASH.pth``, the file torch.hub.load_state_dict_from_url
writes, and checks that its SHA-256 starts with the HASH in its name, as torch does.
``pose-train fetch-weights`` fills the cache, once, on a machine with internet; the launcher
and compose mount the cache into the containers. Torch-free: the host launcher imports it.
"""
import os
import shutil
import sys
import urllib.request

from pose_train import environment
from pose_train.errors import UserError
from pose_train.files import atomic_write, sha256_of

# torchvision's ImageNet weights (vgg19: IMAGENET1K_V1; resnet50/101: IMAGENET1K_V1).
URLS = {
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}
WORDS = ("imagenet", "none")   # --pretrained values that are not paths


def torch_home():
    """torch's rule: $TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch."""
    return os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")


def cache_path(name):
    return os.path.join(torch_home(), "hub", "checkpoints", os.path.basename(URLS[name]))


def _expected_hash(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.rsplit("-", 1)[-1]


def check(path):
    """The file's SHA-256 must start with the hash in its name (torch's check_hash)."""
    if not sha256_of(path).startswith(_expected_hash(path)):
        raise UserError("%s: its SHA-256 does not start with %s (a damaged or partial "
                        "download); delete it and run `pose-train fetch-weights` again"
                        % (path, _expected_hash(path)))
    return path


def resolve(value, name, say=print, random_ok=False):
    """The weights file a run starts its trunk from, or None for a random trunk.

    value: None (imagenet when cached, else random, said loudly), "imagenet", "none" or a path.
    random_ok: the recipe is made for a random trunk (said as a note, not a warning).
    """
    if value == "none":
        return None
    if value not in (None, "imagenet"):
        return value
    path = cache_path(name)
    if os.path.isfile(path):
        return check(path)
    fill = "pose-train fetch-weights %s" % name
    if value == "imagenet":
        raise UserError("--pretrained imagenet: %s is not in torch's cache (%s); fill it with "
                        "`%s` where there is internet, or pass --pretrained FILE"
                        % (os.path.basename(path), os.path.dirname(path), fill))
    # In an image without the host's cache mounted (no TORCH_HOME), the cache's path is the
    # container's: `fetch-weights` on the host is what fills the one the launcher mounts.
    where = ("" if os.environ.get(environment.RUNTIME) and not os.environ.get("TORCH_HOME")
             else " (%s)" % os.path.dirname(path))
    if random_ok:
        say("note: no ImageNet %s in torch's cache%s: this recipe trains from a random trunk, as "
            "its measured figures do; `%s` gives it ImageNet's" % (name, where, fill))
        return None
    say("WARNING: no ImageNet %s in torch's cache%s: the trunk starts RANDOM and converges "
        "much more slowly. `%s` fills the cache once; --pretrained none silences this."
        % (name, where, fill))
    return None


def fetch(name, say=print):
    """Download one file into the cache (hash-checked; a partial download never lands)."""
    path = cache_path(name)
    if os.path.isfile(path):
        say("%s is already cached: %s" % (name, check(path)))
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    say("downloading %s -> %s" % (URLS[name], path))
    try:
        with urllib.request.urlopen(URLS[name], timeout=60) as response:
            atomic_write(path, lambda f: shutil.copyfileobj(response, f),
                         check=lambda tmp: _verify_download(tmp, name))
    except OSError as err:
        raise UserError("cannot download %s (%s); on a machine without internet, copy the "
                        "file into %s" % (URLS[name], err, os.path.dirname(path)))
    return path


def _verify_download(tmp, name):
    expected, digest = _expected_hash(cache_path(name)), sha256_of(tmp)
    if not digest.startswith(expected):
        raise UserError("%s: the download's SHA-256 starts %s, not %s; try again"
                        % (URLS[name], digest[:8], expected))


def fetch_job(args):
    """`pose-train fetch-weights [NAME ...]` (declared in pose_train.jobs.host)."""
    for name in args.name or sorted(URLS):
        fetch(name, say=lambda line: print(line, file=sys.stderr))
    return 0
