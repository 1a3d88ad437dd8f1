"""DPG: AlphaPose's "pose-guided proposals generator", which kp6d trains with (--addDPG).

It is box jitter, so that the network learns from boxes as imperfect as a detector's.
Per sample (batched here, on the training device; boxes are x0, y0, x1, y1):

* with probability PATCH_P, a random sub-patch: both sides scaled by the same
  factor drawn uniformly from (1 - PATCH_P, 1), placed uniformly inside the box;
* otherwise each edge moves by a Normal offset times the box width or height, with
  AlphaPose's constants (mean, std) for how far detected boxes sit from true ones:
      x0: (-0.0142, 0.1158)  y0: (0.0043, 0.0680)  x1: (0.0154, 0.1337)  y1: (-0.0013, 0.0711)
* then the crop branch: when more than `crop_threshold(kpnum)` keypoints lie inside the
  jittered box, with probability CROP_P (AlphaPose: 0.32) the box is cut to one of its
  four quarters or four halves, each equally likely, so that partial views are seen too.
  AlphaPose's threshold is "> 13" of 17 joints; here it scales with kpnum (13/17 of it).
Jittered boxes are clamped to the image and kept at least MIN_SIZE pixels wide and high.
"""
import torch

PATCH_P = 0.15
CROP_P = 0.32
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
    """Cut eligible boxes, with probability p, to a quarter or a half (8 regions, equally likely)."""
    b = boxes.shape[0]
    eligible = keypoints_inside(boxes, kps, vis) > crop_threshold(kps.shape[1])
    cut = eligible & (torch.rand(b, generator=gen, device=boxes.device) < p)
    # Regions 0-3: top-left, top-right, bottom-left, bottom-right quarter;
    # 4-7: left, right, top, bottom half (AlphaPose's order).
    region = torch.randint(0, 8, (b,), generator=gen, device=boxes.device)

    def among(*ids):
        return cut & torch.isin(region, torch.tensor(ids, device=boxes.device))
    mid_x = (boxes[:, 0] + boxes[:, 2]) / 2
    mid_y = (boxes[:, 1] + boxes[:, 3]) / 2
    out = boxes.clone()
    out[:, 2] = torch.where(among(0, 2, 4), mid_x, out[:, 2])   # keep the left part
    out[:, 0] = torch.where(among(1, 3, 5), mid_x, out[:, 0])   # keep the right part
    out[:, 3] = torch.where(among(0, 1, 6), mid_y, out[:, 3])   # keep the top part
    out[:, 1] = torch.where(among(2, 3, 7), mid_y, out[:, 1])   # keep the bottom part
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
    """Full DPG on (B,4) boxes with (B,K,2) keypoints in the same pixel frame (AlphaPose's
    order: jitter first, then count keypoints in the jittered box for the crop branch)."""
    moved, _ = jitter(boxes, gen)
    moved = clamp_boxes(moved, boxes, width, height)
    return crop_branch(moved, kps, vis, gen)
