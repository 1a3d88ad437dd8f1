"""A DopeNetwork that trains with BatchNorm and is saved without it.

The plain VGG trunk DOPE trains from random weights has no normalisation: the image signal
all but vanishes through it (benchmarks/dope_init.py) and a constant small learning rate is
all it tolerates. With a BatchNorm after every hidden convolution it trains at ten times the
rate. Each BatchNorm is an affine map per channel in eval mode, so it folds exactly into the
convolution before it: the weights saved are DOPE's ``DopeNetwork`` keys and shapes, and the
node computes what the trained graph computed (to float rounding).
"""
import collections

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from pose_train_py27.nets import DopeNetwork


class ConvBN(nn.Module):
    """A convolution followed by the BatchNorm that will be folded into it."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(conv.out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))


def normalized(net):
    """``net`` (a DopeNetwork, changed in place and returned) with a BatchNorm after every
    convolution but each stage's output one, so the maps keep their scale. The convolutions
    keep their weights: a plain network's weights carry over, and the same --seed starts both
    recipes from the same convolutions."""
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        last = len(module) - 1
        for i, child in enumerate(module):
            if isinstance(child, nn.Conv2d) and i != last:
                module[i] = ConvBN(child)
    return net


def is_normalized(net):
    return any(isinstance(m, ConvBN) for m in net.modules())


def folded_state(net):
    """The plain DopeNetwork state dict of ``net``: each ConvBN folded with its running
    statistics (eval mode), every other tensor as it is. Keys in DopeNetwork's order."""
    out = collections.OrderedDict()
    for name, module in net.named_modules():
        if isinstance(module, ConvBN):
            bn, conv = module.bn, module.conv
            weight, bias = fuse_conv_bn_weights(
                conv.weight.detach().double(), _double(conv.bias), bn.running_mean.double(),
                bn.running_var.double(), bn.eps, bn.weight.detach().double(), bn.bias.detach().double())
            out[name + ".weight"] = weight.detach().to(conv.weight.dtype)
            out[name + ".bias"] = bias.detach().to(conv.weight.dtype)
        elif isinstance(module, nn.Conv2d) and not _inside_convbn(name, net):
            out[name + ".weight"] = module.weight.detach()
            out[name + ".bias"] = module.bias.detach()
    plain = DopeNetwork(stages=net.stages).state_dict()
    return collections.OrderedDict((k, out[k].clone()) for k in plain)


def deployable(net):
    """What is saved and validated: ``net`` itself when plain, else a plain DopeNetwork on the
    CPU holding its folded weights (in eval mode)."""
    if not is_normalized(net):
        return net
    plain = DopeNetwork(stages=net.stages)
    plain.load_state_dict({k: v.float().cpu() for k, v in folded_state(net).items()}, strict=True)
    return plain.eval()


def _double(tensor):
    return None if tensor is None else tensor.detach().double()


def _inside_convbn(name, net):
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    return isinstance(net.get_submodule(parent), ConvBN) if parent else False


@torch.no_grad()
def fold_error(net, images):
    """max |difference| of every stage's maps between ``net`` in eval mode and its folded
    plain network, on ``images`` (what the README and the tests report)."""
    was = net.training
    net.eval()
    try:
        a_b, a_a = net(images)
        plain = deployable(net).to(images.device)
        b_b, b_a = plain(images)
    finally:
        net.train(was)
    return max(float((x - y).abs().max()) for x, y in zip(a_b + a_a, b_b + b_a))
