"""Building FastPose for training and loading weights into it.

The network itself is pose_train_py27.nets.FastPose (the one definition both runtimes use).
Weights files are plain state dicts with AlphaPose/kp6d's key names and no `module.`
prefix, which is how kp6d saved them (torch.save(model.module.state_dict())), so a
kp6d .pkl loads here strictly and ours load in kp6d's code and in the legacy runtime.
"""
import torch

from pose_train_py27.nets import FastPose
from pose_train.errors import UserError
from pose_train.training import checkpoint as ckpt

ARCHS = ("resnet101", "resnet50")


def build(num_classes, arch):
    if arch not in ARCHS:
        raise UserError("--arch must be one of %s, got %r" % ("|".join(ARCHS), arch))
    return FastPose(num_classes, architecture=arch)


def weights_of(obj, path):
    """The state dict inside a loaded file: a weights file or a pose-train training state."""
    if ckpt.is_state(obj):
        return obj["model"]
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    if isinstance(obj, dict) and all(torch.is_tensor(v) for v in obj.values()):
        return obj
    raise UserError("%s holds no state dict; pass a FastPose weights file (.pkl/.pth)" % path)


def _describe(keys, limit=4):
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (" ... (%d in all)" % len(keys) if len(keys) > limit else "")


def load_weights(model, path):
    """Strict load of a FastPose weights file; DataParallel's `module.` prefix is dropped first."""
    sd = ckpt.strip_prefix(weights_of(ckpt.load_file(path), path))
    own = model.state_dict()
    missing, unexpected = set(own) - set(sd), set(sd) - set(own)
    if missing or unexpected:
        raise UserError("%s does not match FastPose(%d keypoints, this --arch): missing %s; "
                        "unexpected %s" % (path, model.conv_out.out_channels,
                                           _describe(missing) or "none", _describe(unexpected) or "none"))
    bad = [k for k in sd if tuple(sd[k].shape) != tuple(own[k].shape)]
    if bad:
        raise UserError("%s: shapes differ for %s (was it trained with another --nClasses?)"
                        % (path, _describe(bad)))
    model.load_state_dict(sd, strict=True)


def load_pretrained(model, path):
    """ImageNet ResNet weights (torchvision key layout, a local file) into the backbone.

    torchvision's ResNet has no SE layers, so those and the upsampling head stay at their
    initialisation; everything else must match or the file is the wrong network.
    """
    sd = ckpt.strip_prefix(weights_of(ckpt.load_file(path), path))
    backbone = model.preact.state_dict()
    usable = {k: v for k, v in sd.items() if k in backbone and tuple(v.shape) == tuple(backbone[k].shape)}
    if not usable:
        raise UserError("%s has no ResNet backbone weights matching --arch (expected keys like "
                        "conv1.weight, layer1.0.conv1.weight)" % path)
    model.preact.load_state_dict(usable, strict=False)
    print("pretrained: %d of %d backbone tensors from %s (SE layers start fresh)"
          % (len(usable), len(backbone), path))


def make_optimizer(name, params, lr):
    """kp6d/AlphaPose's choices; RMSprop is AlphaPose's default (alpha 0.99, eps 1e-8)."""
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "nag":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)
    raise UserError("--optMethod must be rmsprop|adam|sgd|nag, got %r" % name)


def lr_at(base, schedule, epoch, epochs):
    """Learning rate for an epoch: none (constant), step (x0.1 at 60% and 85%), cosine."""
    import math
    if schedule == "none":
        return base
    if schedule == "step":
        return base * (0.1 ** sum(epoch >= int(f * epochs) for f in (0.6, 0.85)))
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    raise UserError("--lr_schedule must be none|step|cosine, got %r" % schedule)
