"""Augmentation, applied jointly to image and keypoints.

Split in two on purpose:
* geometry (crop, scale, rotation) is one affine per sample, drawn in the loader worker. Frames
  differ in size until they are cropped, so the warp runs either in the worker (one
  ``cv2.warpAffine`` of uint8 pixels, about the cost of a resize) or, with CUDA and same-size
  frames, on the GPU for the whole batch (``warp_batch``: the worker only decodes). The fill is
  constant (a neutral grey, the ImageNet mean): DOPE's reflect-border rotation
  mirrors objects into the border without labels for them (Deep_Object_Pose issue #352).
* photometry (brightness, contrast, saturation, noise) and normalisation run on the whole
  batch as tensor ops, on the GPU when there is one.

Randomness comes from generators seeded by (seed, epoch, sample or step), never from global
state, so a resumed run draws exactly the augmentations the uninterrupted run would have.
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

# The one table of input normalisations (inference in both runtimes reads it too).
from pose_train_py27.dope_io import IMAGENET_MEAN, NORMALIZATIONS

FILL_RGB = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)   # a neutral grey border


@dataclass
class GeometryParams:
    scale_range: tuple = (0.8, 1.25)   # relative to "shorter side fills the crop"
    max_rotation_deg: float = 20.0
    max_shift: float = 0.25            # crop centre jitter, fraction of the crop side


def random_affine(rng, width, height, out_size, params, train=True):
    """2x3 matrix mapping source pixels to the out_size x out_size crop.

    Base scale maps the image's shorter side onto the crop (what DOPE's 400 px crop of a 480 px
    high frame does, and what its inference-time downscale does).
    """
    base = out_size / float(min(width, height))
    if not train:
        scale, angle, cx, cy = base, 0.0, width / 2.0, height / 2.0
    else:
        scale = base * rng.uniform(*params.scale_range)
        angle = rng.uniform(-params.max_rotation_deg, params.max_rotation_deg)
        window = out_size / scale               # crop side in source pixels
        spare_x = max(0.0, (width - window) / 2.0) + params.max_shift * window
        spare_y = max(0.0, (height - window) / 2.0) + params.max_shift * window
        cx = width / 2.0 + rng.uniform(-spare_x, spare_x)
        cy = height / 2.0 + rng.uniform(-spare_y, spare_y)
    a = math.radians(angle)
    c, s = scale * math.cos(a), scale * math.sin(a)
    # Rotate+scale about (cx, cy), then move (cx, cy) to the crop centre.
    return np.array([[c, s, out_size / 2.0 - c * cx - s * cy],
                     [-s, c, out_size / 2.0 + s * cx - c * cy]], dtype=np.float64)


def warp_sample(image, points, matrix, out_size):
    """Apply the affine to an HxWx3 uint8 image and (..., 2) keypoints."""
    warp = matrix
    if math.hypot(matrix[0, 0], matrix[0, 1]) < 0.5:
        # Strong downscale: area-resize first so the warp's bilinear taps do not alias, then
        # compose the warp with the resized -> original pixel-centre mapping.
        h, w = image.shape[:2]
        f = 2.0 * math.hypot(matrix[0, 0], matrix[0, 1])
        image = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                           interpolation=cv2.INTER_AREA)
        fx, fy = image.shape[1] / float(w), image.shape[0] / float(h)
        back = np.array([[1.0 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1.0 / fy, 0.5 / fy - 0.5],
                         [0.0, 0.0, 1.0]])
        warp = matrix @ back
    out = cv2.warpAffine(image, warp, (out_size, out_size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=FILL_RGB)
    return out, transform_points(points, matrix)


def transform_points(points, matrix):
    """(..., 2) pixel coordinates through a 2x3 affine."""
    if not points.size:
        return points
    flat = points.reshape(-1, 2).astype(np.float64)
    return (flat @ matrix[:, :2].T + matrix[:, 2]).reshape(points.shape).astype(np.float32)


def warp_batch(frames, matrices, out_size, fill=FILL_RGB):
    """The warp_sample geometry for a whole batch on the device (used when CUDA is present).

    frames: uint8 (B, H, W, 3) full decoded frames of one size; matrices: (B, 2, 3) frame pixel
    -> crop pixel, exactly what random_affine returns. Returns float (B, S, S, 3) in [0, 1].
    Pixel centres follow cv2's convention (integer coordinates), and normalised coordinates with
    align_corners=False do not depend on resolution, so an anti-aliased pre-shrink for strong
    downscales needs no change to the sampling grid.
    """
    b, h, w, _ = frames.shape
    dev = frames.device
    fill_t = torch.tensor(fill, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
    x = frames.permute(0, 3, 1, 2).float() - fill_t          # 0 outside == the fill colour
    m = torch.zeros(b, 3, 3, device=dev, dtype=torch.float64)
    m[:, :2] = matrices.to(dev, torch.float64)
    m[:, 2, 2] = 1.0
    inv = torch.linalg.inv(m)                                   # crop pixel -> frame pixel
    to_norm = torch.tensor([[2.0 / w, 0, 1.0 / w - 1], [0, 2.0 / h, 1.0 / h - 1], [0, 0, 1]],
                           device=dev, dtype=torch.float64)
    s = float(out_size)
    from_norm = torch.tensor([[s / 2, 0, (s - 1) / 2], [0, s / 2, (s - 1) / 2], [0, 0, 1]],
                             device=dev, dtype=torch.float64)
    theta = (to_norm @ inv @ from_norm)[:, :2].float()
    scale = float(torch.linalg.det(m[:, :2, :2]).abs().sqrt().min())
    if scale < 0.5:
        x = torch.nn.functional.interpolate(x, scale_factor=2.0 * scale, mode="bilinear",
                                            antialias=True, align_corners=False)
    grid = torch.nn.functional.affine_grid(theta, (b, 3, out_size, out_size), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    return ((out + fill_t).clamp_(0, 255) / 255.0).permute(0, 2, 3, 1).contiguous()


@dataclass
class PhotometricParams:
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    noise_std: float = 0.03


LUMA = (0.299, 0.587, 0.114)


def colour_affine(mean, brightness, contrast, saturation):
    """Brightness, then contrast about the image mean, then saturation about the luma, folded
    into one per-sample affine map x -> M x + k (M: (B, 3, 3), k: (B, 1, 1)).

    Folding matters on the CPU: one batched 3x3 matmul reads the pixels once instead of the ~15
    elementwise passes the three steps take one after another.
    """
    b = mean.shape[0]
    mean, brightness = mean.view(b, 1, 1), brightness.view(b, 1, 1)
    contrast, saturation = contrast.view(b, 1, 1), saturation.view(b, 1, 1)
    luma = torch.tensor(LUMA, device=mean.device, dtype=mean.dtype).view(1, 1, 3)
    eye = torch.eye(3, device=mean.device, dtype=mean.dtype).view(1, 3, 3)
    mix = saturation * eye + (1 - saturation) * luma.expand(1, 3, 3)   # rows: s*e_i + (1-s)*luma
    k = contrast * brightness + (1 - contrast) * (mean + brightness)    # luma sums to 1: k passes
    return contrast * mix, k


def photometric(images, generator, params):
    """Colour jitter + pixel noise on a float batch in [0, 1], channels last (B, H, W, 3).

    Channels-last because that is how the loader delivers pixels and what the network runs on
    under CUDA: the colour map is then one (HW x 3) @ (3 x 3) product per sample, no copies.
    """
    b = images.shape[0]
    dev, dt = images.device, images.dtype

    def u(lo, hi):
        return torch.empty(b, device=dev, dtype=dt).uniform_(lo, hi, generator=generator)

    m, k = colour_affine(images.mean(dim=(1, 2, 3)), u(-params.brightness, params.brightness),
                         u(1 - params.contrast, 1 + params.contrast),
                         u(1 - params.saturation, 1 + params.saturation))
    x = torch.baddbmm(k, images.reshape(b, -1, 3), m.transpose(1, 2)).view_as(images)
    # Uniform noise with the requested standard deviation: on the CPU it is ~7x cheaper to draw
    # than Gaussian noise, and the network cannot tell the difference at this amplitude.
    noise = torch.empty_like(x).uniform_(-3 ** 0.5, 3 ** 0.5, generator=generator)
    x.add_(noise.mul_(u(0.0, params.noise_std).view(b, 1, 1, 1)))
    return x.clamp_(0.0, 1.0)


def normalize(images, norm=NORMALIZATIONS["ros"]):
    """``norm`` (one of NORMALIZATIONS) applied in place to a channels-last (B, H, W, 3) batch."""
    m = torch.tensor(norm["mean"], device=images.device, dtype=images.dtype)
    s = torch.tensor(norm["std"], device=images.device, dtype=images.dtype)
    return images.sub_(m).div_(s)


def denormalize(images, norm):
    """NCHW normalised batch -> uint8 (B, H, W, 3) RGB, for pictures."""
    m = torch.tensor(norm["mean"]).view(1, 3, 1, 1)
    s = torch.tensor(norm["std"]).view(1, 3, 1, 1)
    x = images.detach().float().cpu() * s + m
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def step_generator(device, seed, epoch, step, rank):
    """A generator for one batch's photometric draws, independent of any global RNG state."""
    g = torch.Generator(device=device)
    g.manual_seed(((seed * 1000003 + epoch) * 1000003 + step) * 131 + rank)
    return g
