"""A DopeNetwork that trains with BatchNorm and fewer stages, and is saved as DOPE's.

The plain VGG trunk DOPE trains from random weights has no normalisation: the image signal
all but vanishes through it (benchmarks/dope_init.py) and a constant small learning rate is
all it tolerates. With a BatchNorm after every hidden convolution it trains at ten times the
rate. Each BatchNorm is an affine map per channel in eval mode, so it folds exactly into the
convolution before it: the weights saved are DOPE's ``DopeNetwork`` keys and shapes, and the
node computes what the trained graph computed (to float rounding).

Stages 2-6 are two thirds of a step's arithmetic (ten branches of five 7x7 convolutions over
128 channels). A network may train fewer stages; the saved file then holds stages that pass
the last trained stage's maps through unchanged (each map split into its positive and negative
parts, carried by the centre tap of every convolution, and joined again), so DOPE's node,
which decodes the sixth stage, decodes what the trained stages found. Their other channels
start with small random inputs and zero outputs: training them later (--net with --recipe
dope) starts from the pass-through and can improve on it.
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


# The trunk's convolutions between two of the same width (conv1_2, conv2_2, conv3_2-3_4,
# conv4_2): each sees ReLU outputs (>= 0), so an identity kernel followed by its ReLU passes
# them through exactly.
SKIPPABLE = (2, 7, 12, 14, 16, 21)


def normalized(net, stages=None, skip=()):
    """``net`` (a DopeNetwork, changed in place and returned) with a BatchNorm after every
    convolution but each stage's output one, so the maps keep their scale, and only its first
    ``stages`` stages. The convolutions keep their weights: a plain network's weights carry
    over, and the same --seed starts both recipes from the same convolutions."""
    net.full_stages = net.stages
    net.skipped = tuple(skip)
    for index in skip:      # the conv and its ReLU: the input is a ReLU's output already
        net.vgg[index], net.vgg[index + 1] = nn.Identity(), nn.Identity()
    for s in range((stages or net.stages) + 1, net.stages + 1):
        delattr(net, "m%d_2" % s)
        delattr(net, "m%d_1" % s)
    net.stages = stages or net.stages
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
    for index in getattr(net, "skipped", ()):
        channels = DopeNetwork().vgg[index].out_channels
        weight = torch.zeros(channels, channels, 3, 3)
        weight[range(channels), range(channels), 1, 1] = 1.0
        out["vgg.%d.weight" % index], out["vgg.%d.bias" % index] = weight, torch.zeros(channels)
    full = getattr(net, "full_stages", net.stages)
    for s in range(net.stages + 1, full + 1):
        for branch, offset, maps in (("m%d_2" % s, 0, 9), ("m%d_1" % s, 9, 16)):
            out.update(pass_through(branch, offset, maps, seed=2 * s + (offset > 0)))
    plain = DopeNetwork(stages=full).state_dict()
    return collections.OrderedDict((k, out[k].clone()) for k in plain)


def pass_through(name, offset, maps, seed, features=128 + 9 + 16, width=128, free_std=1e-2):
    """The tensors of a stage branch (DOPE's m{s}_{1|2}) whose output is its input's channels
    ``offset``..``offset + maps`` exactly. Hidden channel 2i carries relu(x_i), 2i+1 relu(-x_i);
    the output is their difference. Deterministic: a save is the same file every time."""
    gen = torch.Generator().manual_seed(seed)
    carried = 2 * maps
    shapes = [(width, features, 7)] + [(width, width, 7)] * 4 + [(width, width, 1)]
    out = collections.OrderedDict()
    for layer, (rows, cols, k) in zip((0, 2, 4, 6, 8, 10), shapes):
        w = torch.zeros(rows, cols, k, k)
        w[carried:] = free_std * torch.randn(rows - carried, cols, k, k, generator=gen)
        for i in range(maps):
            if layer == 0:
                w[2 * i, offset + i, k // 2, k // 2], w[2 * i + 1, offset + i, k // 2, k // 2] = 1.0, -1.0
            else:
                w[2 * i, 2 * i, k // 2, k // 2] = w[2 * i + 1, 2 * i + 1, k // 2, k // 2] = 1.0
        out["%s.%d.weight" % (name, layer)], out["%s.%d.bias" % (name, layer)] = w, torch.zeros(rows)
    w = torch.zeros(maps, width, 1, 1)
    for i in range(maps):
        w[i, 2 * i], w[i, 2 * i + 1] = 1.0, -1.0
    out["%s.12.weight" % name], out["%s.12.bias" % name] = w, torch.zeros(maps)
    return out


def deployable(net):
    """What is saved and validated: ``net`` itself when plain, else a plain DopeNetwork on the
    CPU holding its folded weights and any pass-through stages (in eval mode)."""
    if not is_normalized(net):
        return net
    plain = DopeNetwork(stages=getattr(net, "full_stages", net.stages))
    plain.load_state_dict({k: v.float().cpu() for k, v in folded_state(net).items()}, strict=True)
    return plain.eval()


def _double(tensor):
    return None if tensor is None else tensor.detach().double()


def _inside_convbn(name, net):
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    return isinstance(net.get_submodule(parent), ConvBN) if parent else False


@torch.no_grad()
def fold_error(net, images):
    """max |difference| of the last stage's maps between ``net`` in eval mode and the network
    it saves, on ``images`` (what the README and the tests report)."""
    was = net.training
    net.eval()
    try:
        a_b, a_a = net(images)
        plain = deployable(net).to(images.device)
        b_b, b_a = plain(images)
    finally:
        net.train(was)
    return max(float((a_b[-1] - b_b[-1]).abs().max()), float((a_a[-1] - b_a[-1]).abs().max()))
