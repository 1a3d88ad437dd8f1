"""DOPE weights files: the layout DOPE's ROS node loads, plus what a run starts from.

``net_epoch_XX.pth`` is ``DataParallel(DopeNetwork()).state_dict()`` exactly: a plain dict of
tensors with ``module.``-prefixed keys, nothing else in it (DOPE's node calls
``load_state_dict(torch.load(path))`` on a DataParallel-wrapped network). It is written in the
pre-1.6 ("legacy", non-zip) serialization, which torch 2.x and the torch 1.4 of ROS Melodic both
read: the seed's "convert the .pth for Python 2" step is not needed. Facts a user needs that
the weights cannot carry (input normalisation, object, crop size) go in ``net_epoch_XX.json``.
"""
import collections
import os
import re

from pose_train.errors import UserError
from pose_train.training.legacy_writer import write_legacy
from pose_train.files import atomic_write, sha256_of, write_sidecar
from pose_train.training.checkpoint_io import load_file, load_weights, unwrap
from pose_train_py27.keys import add_prefix, strip_prefix


def weights_name(epoch):
    """``net_epoch_07.pth``; ``%02d`` grows by itself past 99 (net_epoch_100.pth)."""
    return "net_epoch_%02d.pth" % epoch


BEST_NAME = "net_best.pth"


def save_epoch_weights(outf, model, epoch, meta):
    """Write the ROS-loadable weights file and its json sidecar (both atomically)."""
    return save_weights(os.path.join(outf, weights_name(epoch)), model, dict(meta, epoch=epoch))


def save_weights(path, model, meta):
    """``path`` (DOPE's node layout, legacy format) and its sidecar, each written atomically;
    the sidecar last, so a sidecar never describes weights that are not there yet."""
    state = collections.OrderedDict(
        (k, v.detach().cpu().contiguous()) for k, v in add_prefix(unwrap(model).state_dict()).items())
    path = atomic_write(path, lambda f: write_legacy(state, f))
    # The pair is two renames: the sidecar names the bytes it describes, so a pair a kill cut
    # between them is found (see matching_sidecar).
    write_sidecar(path, dict(meta, weights=os.path.basename(path), weights_sha256=sha256_of(path),
                             key_prefix="module.",
                             serialization="legacy (torch < 1.6 format; loads in torch 1.4 and 2.x)"))
    return path


def prune_epochs(outf, epoch, first_epoch, keep):
    """Remove the epoch weights (and json) of this run older than its newest ``keep`` (0:
    none). Only files this run wrote go: their sidecar names this run's first epoch."""
    from pose_train_py27 import sidecar
    removed = []
    for old in range(first_epoch, epoch - keep + 1) if keep else ():
        path = os.path.join(outf, weights_name(old))
        meta = sidecar.read(path) if os.path.isfile(path) else {}
        if meta.get("epoch") != old or (meta.get("config") or {}).get("first_epoch") != first_epoch:
            continue
        for name in (path, sidecar.path_of(path)):
            os.remove(name)
        removed.append(path)
    return removed


def matching_sidecar(path, meta):
    """False when ``meta`` records other bytes than ``path`` holds (a save cut short between
    the weights and the sidecar); True otherwise, or when it records none (older files)."""
    recorded = meta.get("weights_sha256")
    return recorded is None or recorded == sha256_of(path)


def epoch_from_name(path):
    """The epoch a weights file name says it finished: net_epoch_10.pth -> 10,
    DOPE's net_cube_0010.pth -> 10; None when the name has no number."""
    numbers = re.findall(r"(\d+)", os.path.splitext(os.path.basename(path))[0])
    return int(numbers[-1]) if numbers else None


def load_weights_into(model, path, obj=None):
    """DOPE weights (with or without ``module.``) into ``model``, strictly."""
    load_weights(model, path, obj, network="DOPE's DopeNetwork",
                 hint="; --net takes DOPE weights or a training_state.pt")


# torchvision's vgg19().features indices 0..21 (conv1_1 .. conv4_2) equal DOPE's vgg.0..21.
_VGG_LAST_SHARED = 21


def load_pretrained_vgg(model, path):
    """Initialise ``vgg.0..21`` from a local ImageNet VGG-19 checkpoint (never downloads).

    Accepts torchvision's layout (``features.N.*``) or DOPE's (``vgg.N.*``).
    """
    state = strip_prefix(load_file(path))
    own = unwrap(model).state_dict()
    picked = {}
    for key, value in state.items():
        m = re.match(r"^(?:features|vgg)\.(\d+)\.(weight|bias)$", key)
        if m and int(m.group(1)) <= _VGG_LAST_SHARED:
            target = "vgg.%s.%s" % m.groups()
            if own[target].shape != value.shape:
                raise UserError("%s: %s has shape %s, DOPE expects %s; pass an ImageNet VGG-19 "
                                "checkpoint" % (path, key, tuple(value.shape),
                                                tuple(own[target].shape)))
            picked[target] = value
    if len(picked) != 20:   # 10 convs x (weight, bias)
        raise UserError("%s: found %d of the 20 VGG-19 conv1_1..conv4_2 tensors; pass "
                        "torchvision's vgg19 state dict (features.N.weight)" % (path, len(picked)))
    unwrap(model).load_state_dict(picked, strict=False)
    return len(picked)
