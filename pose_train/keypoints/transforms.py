"""Batched crops, augmentation and targets on the training device (GPU or CPU).

A batch is built from the prepared uint8 context crops in one affine grid_sample: no
per-sample Python work, no image decode, so the data side keeps up with a bf16 model
step. The affine maps each output (network input) pixel to a crop pixel:

    crop = c + k * Rot(angle) * (out - o)    o = output centre, c = box centre,
                                             k = crop pixels per input pixel

The box is enlarged by ENLARGE (AlphaPose's scaleRate 0.3), widened to the input aspect
ratio, and scaled by the augmentation factor. Horizontal flip is off by default: a
mirrored rigid object with unswapped keypoints is an object that does not exist.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pose_train.keypoints import dpg, heatmaps

# AlphaPose's input normalisation: RGB in [0, 1] minus these means, no division by a std.
# Kept so kp6d/AlphaPose checkpoints see the inputs they were trained on.
MEAN = (0.406, 0.457, 0.480)
ENLARGE = 1.3


@dataclass
class Augment:
    scale: float = 0.25      # factor ~ clip(1 + scale * N(0,1), 1 - scale, 1 + scale)
    rotate: float = 40.0     # degrees, uniform in +-rotate ...
    rotate_p: float = 0.4    # ... with this probability (AlphaPose rotates 40% of samples)
    color: float = 0.2       # per-channel gain uniform in 1 +- color
    flip: bool = False


def box_affine(boxes, out_hw, scale, angle, flip=None):
    """(B,4) xyxy boxes in crop pixels -> (B,2,3) affine from output pixels to crop pixels."""
    out_h, out_w = out_hw
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0) * ENLARGE
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0) * ENLARGE
    k = torch.maximum(w / out_w, h / out_h) * scale          # keep the aspect ratio: pad, no stretch
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    cos, sin = torch.cos(angle) * k, torch.sin(angle) * k
    sx = torch.ones_like(k) if flip is None else torch.where(flip, -1.0, 1.0)
    ox, oy = (out_w - 1) / 2.0, (out_h - 1) / 2.0
    a = torch.stack([cos * sx, -sin, cx - (cos * sx * ox - sin * oy),
                     sin * sx, cos, cy - (sin * sx * ox + cos * oy)], 1)
    return a.view(-1, 2, 3)


def invert_points(affine, pts):
    """Crop pixels (B,K,2) -> output pixels under the affine's inverse."""
    lin, off = affine[:, :, :2], affine[:, :, 2]
    return torch.linalg.solve(lin[:, None], (pts - off[:, None])[..., None])[..., 0]


def apply_points(affine, pts):
    """Output pixels (B,K,2) -> crop pixels."""
    return torch.einsum("bij,bkj->bki", affine[:, :, :2], pts) + affine[:, None, :, 2]


def warp(crops, affine, out_hw):
    """uint8 (B,S,S,3) crops -> float (B,3,H,W) in [0,1] sampled through the affine."""
    out_h, out_w = out_hw
    size = crops.shape[1]
    ys, xs = torch.meshgrid(torch.arange(out_h, device=crops.device, dtype=torch.float32),
                            torch.arange(out_w, device=crops.device, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs, ys], -1).view(1, -1, 2).expand(crops.shape[0], -1, -1)
    src = apply_points(affine.float(), grid)
    src = (2.0 * src + 1.0) / size - 1.0                      # align_corners=False convention
    img = crops.permute(0, 3, 1, 2).float().div_(255.0)
    return F.grid_sample(img, src.view(-1, out_h, out_w, 2), mode="bilinear",
                         padding_mode="zeros", align_corners=False)


def normalize(img):
    mean = torch.tensor(MEAN, device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
    return img - mean


def sample_augment(b, aug, gen, device):
    """Per-sample scale, angle (radians), colour gains and flip."""
    def rand(*shape):
        return torch.rand(*shape, generator=gen, device=device)
    scale = (1.0 + aug.scale * torch.randn(b, generator=gen, device=device)).clamp(
        1.0 - aug.scale, 1.0 + aug.scale)
    angle = (rand(b) * 2 - 1) * aug.rotate * (rand(b) < aug.rotate_p).float() * math.pi / 180.0
    gains = 1.0 + (rand(b, 3) * 2 - 1) * aug.color
    flip = (rand(b) < 0.5) & aug.flip
    return scale, angle, gains, flip


def make_batch(data, idx, out_hw, sigma, gen=None, aug=None, use_dpg=False, boxes=None,
               train_occluded=False):
    """Inputs (B,3,H,W), targets (B,K,H/4,W/4), weights (B,K) and the affine used.

    data: dict of device tensors crops (N,S,S,3) uint8, boxes (N,4), kps (N,K,2), vis (N,K).
    aug None means evaluation: no augmentation and no DPG. boxes overrides the stored boxes.
    """
    crops, kps, vis = data["crops"][idx], data["kps"][idx], data["vis"][idx]
    box = data["boxes"][idx] if boxes is None else boxes
    b, dev = len(idx), crops.device
    if use_dpg:
        size = crops.shape[1]
        box = dpg.apply_dpg(box, kps, vis, size, size, gen)
    if aug is not None:
        scale, angle, gains, flip = sample_augment(b, aug, gen, dev)
    else:
        scale, angle = torch.ones(b, device=dev), torch.zeros(b, device=dev)
        gains, flip = None, None
    affine = box_affine(box, out_hw, scale, angle, flip)
    img = warp(crops, affine, out_hw)
    if gains is not None:
        img = (img * gains[:, :, None, None]).clamp_(0.0, 1.0)
    hh, hw = out_hw[0] // heatmaps.STRIDE, out_hw[1] // heatmaps.STRIDE
    kp_heat = heatmaps.to_heat(invert_points(affine, kps))
    inside = ((kp_heat[..., 0] >= 0) & (kp_heat[..., 0] <= hw - 1) &
              (kp_heat[..., 1] >= 0) & (kp_heat[..., 1] <= hh - 1))
    seen = vis > 0 if train_occluded else vis == 2
    weight = (seen & inside).float()
    target = heatmaps.gaussian_targets(kp_heat, weight, hh, hw, sigma)
    return normalize(img), target, weight, affine
