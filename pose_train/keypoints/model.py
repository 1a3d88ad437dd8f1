"""Building FastPose for training and loading weights into it.

The network itself is pose_train_py27.nets.FastPose (the one definition both runtimes use).
Weights files are plain state dicts with AlphaPose/kp6d's key names and no `module.`
prefix, which is how kp6d saved them (torch.save(model.module.state_dict())), so a
kp6d .pkl loads here strictly and ours load in kp6d's code and in the legacy runtime.
"""
import math

import torch

from pose_train_py27.nets import FastPose
from pose_train.errors import UserError
from pose_train.training import checkpoint_io as ckpt
from pose_train_py27.keys import strip_prefix

ARCHS = ("resnet101", "resnet50")


def build(num_classes, arch):
    if arch not in ARCHS:
        raise UserError("--arch must be one of %s, got %r" % ("|".join(ARCHS), arch))
    return FastPose(num_classes, architecture=arch)


def load_weights(model, path):
    """Strict load of a FastPose weights file (training/checkpoint.load_weights)."""
    ckpt.load_weights(model, path, network="FastPose(%d keypoints, this --arch)"
                      % model.conv_out.out_channels,
                      hint=" (was it trained with another --nClasses or --arch?)")


def load_pretrained(model, path):
    """ImageNet ResNet weights (torchvision key layout, a local file) into the backbone.

    torchvision's ResNet has no SE layers, so those and the upsampling head stay at their
    initialisation; everything else must match or the file is the wrong network.
    """
    sd = strip_prefix(ckpt.weights_of(ckpt.load_file(path), path))
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


def lr_factor(schedule, epochs):
    """--lr_schedule as a factor of --lr per epoch (counted from 0): none, step (x0.1 at 60%
    and 85% of the epochs), cosine (to 0 at the last)."""
    if schedule == "step":
        return lambda e: 0.1 ** sum(e >= int(f * epochs) for f in (0.6, 0.85))
    if schedule == "cosine":
        return lambda e: 0.5 * (1.0 + math.cos(math.pi * e / max(epochs, 1)))
    return lambda e: 1.0


def make_scheduler(optimizer, base_lr, schedule, epochs, done):
    """torch's LambdaLR for --lr_schedule, at the rate of the epoch after ``done`` epochs.

    LambdaLR's rate is a closed form of the epoch, so a resumed run and the DPG stage's fresh
    optimizer land on exactly the rate an uninterrupted run has there.
    """
    for group in optimizer.param_groups:
        group["initial_lr"] = base_lr    # what the factor multiplies, even after a resume
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, epochs),
                                             last_epoch=done - 1)
