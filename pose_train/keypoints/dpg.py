"""DPG: AlphaPose's "pose-guided proposals generator", which kp6d trains with (--addDPG).

It is box jitter, so that the network learns from boxes as imperfect as a detector's.
Per sample (batched here, on the training device; boxes are x0, y0, x1, y1):

* crop branch: when more than `crop_threshold(kpnum)` keypoints are inside the box,
  with probability CROP_P the box is cut to one random half (top/bottom/left/right), so
  the network also sees partial views. AlphaPose does this for people with its threshold
  "> 13 of 17 joints" and cuts at body joints; a rigid object has no parts to cut at, so
  we cut halves and scale the threshold with kpnum (13/17 of the keypoints).
* then, with probability PATCH_P, a random sub-patch: both sides scaled by the same
  factor drawn uniformly from (1 - PATCH_P, 1), placed uniformly inside the box;
* otherwise each edge moves by a Normal offset times the box width or height, with
  AlphaPose's constants (mean, std), measured from its human detector's errors:
      x0: (-0.0142, 0.1158)  y0: (0.0043, 0.0680)  x1: (0.0154, 0.1337)  y1: (-0.0013, 0.0711)
Boxes are then clamped to the image and kept at least MIN_SIZE pixels wide and high.
"""
import torch

PATCH_P = 0.15
CROP_P = 0.08
EDGE_NORMAL = ((-0.0142, 0.1158), (0.0043, 0.0680), (0.0154, 0.1337), (-0.0013, 0.0711))
MIN_SIZE = 4.0


def crop_threshold(kpnum):
    """Keypoints that must be inside the box for the crop branch: AlphaPose's 13 of 17, scaled."""
    return (13 * kpnum) // 17


def keypoints_inside(boxes, kps, vis):
    x, y = kps[..., 0], kps[..., 1]
    inside = ((x > boxes[:, None, 0]) & (x < boxes[:, None, 2]) &
              (y > boxes[:, None, 1]) & (y < boxes[:, None, 3]) & (vis > 0))
    return inside.sum(dim=1)


def crop_branch(boxes, kps, vis, gen, p=CROP_P):
    """Cut eligible boxes to one random half with probability p."""
    b = boxes.shape[0]
    eligible = keypoints_inside(boxes, kps, vis) > crop_threshold(kps.shape[1])
    cut = eligible & (torch.rand(b, generator=gen, device=boxes.device) < p)
    side = torch.randint(0, 4, (b,), generator=gen, device=boxes.device)
    mid_x = (boxes[:, 0] + boxes[:, 2]) / 2
    mid_y = (boxes[:, 1] + boxes[:, 3]) / 2
    out = boxes.clone()
    out[:, 0] = torch.where(cut & (side == 0), mid_x, out[:, 0])   # keep the right half
    out[:, 2] = torch.where(cut & (side == 1), mid_x, out[:, 2])   # keep the left half
    out[:, 1] = torch.where(cut & (side == 2), mid_y, out[:, 1])   # keep the bottom half
    out[:, 3] = torch.where(cut & (side == 3), mid_y, out[:, 3])   # keep the top half
    return out


def jitter(boxes, gen, patch_p=PATCH_P):
    """The sub-patch / Normal edge offset branches; returns (boxes, which samples took a patch)."""
    b, dev = boxes.shape[0], boxes.device
    w = (boxes[:, 2] - boxes[:, 0])
    h = (boxes[:, 3] - boxes[:, 1])
    u = torch.rand(b, generator=gen, device=dev)
    patch = u > 1.0 - patch_p
    # Sub-patch: u itself is the patch scale, as in AlphaPose (so it lies in (1 - patch_p, 1)).
    pw, ph = u * w, u * h
    px0 = boxes[:, 0] + torch.rand(b, generator=gen, device=dev) * (w - pw)
    py0 = boxes[:, 1] + torch.rand(b, generator=gen, device=dev) * (h - ph)
    patch_box = torch.stack([px0, py0, px0 + pw, py0 + ph], 1)
    mean = torch.tensor([m for m, _ in EDGE_NORMAL], device=dev, dtype=boxes.dtype)
    std = torch.tensor([s for _, s in EDGE_NORMAL], device=dev, dtype=boxes.dtype)
    noise = torch.randn(b, 4, generator=gen, device=dev, dtype=boxes.dtype) * std + mean
    edge_box = boxes + noise * torch.stack([w, h, w, h], 1)
    return torch.where(patch[:, None], patch_box, edge_box), patch


def clamp_boxes(boxes, fallback, width, height):
    """Clamp to the image; a box squeezed below MIN_SIZE falls back to the original box."""
    out = torch.stack([boxes[:, 0].clamp(0, width - 1), boxes[:, 1].clamp(0, height - 1),
                       boxes[:, 2].clamp(0, width - 1), boxes[:, 3].clamp(0, height - 1)], 1)
    bad = ((out[:, 2] - out[:, 0]) < MIN_SIZE) | ((out[:, 3] - out[:, 1]) < MIN_SIZE)
    return torch.where(bad[:, None], fallback, out)


def apply_dpg(boxes, kps, vis, width, height, gen):
    """Full DPG on (B,4) boxes with (B,K,2) keypoints in the same pixel frame."""
    cut = crop_branch(boxes, kps, vis, gen)
    moved, _ = jitter(cut, gen)
    return clamp_boxes(moved, boxes, width, height)
