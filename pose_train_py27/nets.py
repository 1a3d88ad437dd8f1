# -*- coding: utf-8 -*-
"""The one definition of every network pose-train ships, runnable in both runtimes.

The training code imports the networks from here (pose_train.dope.network,
pose_train.keypoints.model), so the state-dict layout the robot loads is, by
construction, the layout that was trained.

Key layouts are the published ones:
  DOPE (NVlabs/Deep_Object_Pose): ``vgg.N``, ``m{stage}_{1|2}.N``.
  FastPose (AlphaPose SPPE, as used by kp6d): ``preact.*``, ``duc1.*``, ``duc2.*``, ``conv_out.*``.
"""
from __future__ import absolute_import, division, print_function

import torch
import torch.nn as nn
import torch.nn.functional as F

# VGG-19 ``features`` up to conv4_2 + ReLU (indices 0..22): (out_channels | "M" for max-pool).
_VGG19_TO_CONV4_2 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512]


def _vgg_trunk():
    layers = []
    in_ch = 3
    for spec in _VGG19_TO_CONV4_2:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_ch, spec, kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=True))
            in_ch = spec
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            # torchvision's VGG init, which DOPE's trunk gets from models.vgg19(): with
            # PyTorch's default Conv2d init the image signal has all but vanished by conv3_4
            # (its spread across images is ~1e-4) and training sits at the empty-map loss.
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(layer.bias, 0.0)
    # DOPE's adapter replaces conv4_3 onwards (indices 23..26), with the default init as DOPE's.
    layers += [nn.Conv2d(512, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
               nn.Conv2d(256, 128, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _dope_stage(in_ch, out_ch, first):
    """Stage 1: 3x 3x3 conv, 1x1->512, 1x1->out. Stages 2..6: 5x 7x7 conv, 1x1->128, 1x1->out."""
    mid = 128
    kernel, count, final = (3, 3, 512) if first else (7, 5, mid)
    layers = [nn.Conv2d(in_ch, mid, kernel_size=kernel, padding=kernel // 2)]
    for _ in range(count - 1):
        layers += [nn.ReLU(inplace=True), nn.Conv2d(mid, mid, kernel_size=kernel, padding=kernel // 2)]
    layers += [nn.ReLU(inplace=True), nn.Conv2d(mid, final, kernel_size=1),
               nn.ReLU(inplace=True), nn.Conv2d(final, out_ch, kernel_size=1)]
    return nn.Sequential(*layers)


class DopeNetwork(nn.Module):
    """DOPE: VGG-19 trunk + six belief/affinity stages; input normalised RGB, output stride 8.

    forward() returns (beliefs, affinities): two lists with one tensor per stage.
    """

    def __init__(self, num_belief=9, num_affinity=16, stages=6):
        super(DopeNetwork, self).__init__()
        self.stages = stages
        self.vgg = _vgg_trunk()
        stage_in = 128 + num_belief + num_affinity
        for s in range(1, stages + 1):
            first = s == 1
            # Registration order matters only for named_parameters(); keep DOPE's (m{s}_2 first).
            self.add_module("m%d_2" % s, _dope_stage(128 if first else stage_in, num_belief, first))
            self.add_module("m%d_1" % s, _dope_stage(128 if first else stage_in, num_affinity, first))

    def forward(self, x):
        features = self.vgg(x)
        beliefs, affinities = [], []
        stage_input = features
        for s in range(1, self.stages + 1):
            belief = getattr(self, "m%d_2" % s)(stage_input)
            affinity = getattr(self, "m%d_1" % s)(stage_input)
            beliefs.append(belief)
            affinities.append(affinity)
            stage_input = torch.cat([belief, affinity, features], 1)
        return beliefs, affinities


class SELayer(nn.Module):
    def __init__(self, channel, reduction=1):
        super(SELayer, self).__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel), nn.Sigmoid())

    def forward(self, x):
        b, c = x.size(0), x.size(1)
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, reduction=False):
        super(Bottleneck, self).__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=0.1)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=0.1)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=0.1)
        if reduction:
            self.se = SELayer(planes * 4)
        self.reduc = reduction
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        if self.reduc:
            out = self.se(out)
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class SEResnet(nn.Module):
    """AlphaPose's SE-ResNet: SE only in the first (downsampling) block of each layer."""

    DEPTHS = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}

    def __init__(self, architecture="resnet101"):
        super(SEResnet, self).__init__()
        if architecture not in self.DEPTHS:
            raise ValueError("architecture must be one of %s" % sorted(self.DEPTHS))
        depths = self.DEPTHS[architecture]
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # AlphaPose train_sppe uses momentum 0.1 in every BatchNorm (its stem and downsample
        # layers included); 0.01 would track running statistics ten times slower.
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5, momentum=0.1, affine=True)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, depths[0])
        self.layer2 = self._make_layer(128, depths[1], stride=2)
        self.layer3 = self._make_layer(256, depths[2], stride=2)
        self.layer4 = self._make_layer(512, depths[3], stride=2)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4, momentum=0.1))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, reduction=downsample is not None)]
        self.inplanes = planes * 4
        for _ in range(1, blocks):
            layers.append(Bottleneck(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DUC(nn.Module):
    """Dense upsampling convolution: conv -> BN -> ReLU -> PixelShuffle."""

    def __init__(self, inplanes, planes, upscale_factor=2):
        super(DUC, self).__init__()
        self.conv = nn.Conv2d(inplanes, planes, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)

    def forward(self, x):
        return self.pixel_shuffle(self.relu(self.bn(self.conv(x))))


class FastPose(nn.Module):
    """AlphaPose SPPE FastPose: 320x256 input -> num_classes heatmaps at 80x64."""

    def __init__(self, num_classes=17, architecture="resnet101"):
        super(FastPose, self).__init__()
        self.preact = SEResnet(architecture)
        self.suffle1 = nn.PixelShuffle(2)  # sic: AlphaPose's key name, kept for checkpoint compatibility
        self.duc1 = DUC(512, 1024, upscale_factor=2)
        self.duc2 = DUC(256, 512, upscale_factor=2)
        self.conv_out = nn.Conv2d(128, num_classes, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv_out(self.duc2(self.duc1(self.suffle1(self.preact(x)))))


def create_model(name, **kwargs):
    """Build a network by name: 'dope' or 'fastpose' (kwargs go to the constructor)."""
    registry = {"dope": DopeNetwork, "fastpose": FastPose}
    if name not in registry:
        raise ValueError("unknown model %r; choose from %s" % (name, sorted(registry)))
    return registry[name](**kwargs)

