"""Belief and affinity targets for a whole batch at once (tensor ops; on the GPU when present).

Input: keypoints in crop pixels, shape (B, O, 9, 2), and a validity mask (B, O) for padded
object slots. Output at stride 8:
  beliefs    (B, 9, h, w): a Gaussian per keypoint (8 corners + centroid), max over objects;
  affinities (B, 16, h, w): for corner k, channels 2k, 2k+1 hold the unit vector from the corner
             toward its object's centroid, inside a disk of ``radius`` output pixels around the
             corner; overlapping objects are averaged.
"""
import torch

STRIDE = 8


def to_output_coords(points, stride=STRIDE):
    """Crop pixel -> output-map pixel, both measured at pixel centres."""
    return (points + 0.5) / stride - 0.5


def to_crop_coords(points, stride=STRIDE):
    return (points + 0.5) * stride - 0.5


def make_targets(points, valid, out_hw, sigma, radius=1.0):
    """sigma and radius are in output-map pixels (DOPE: sigma 0.5, radius 1 at 1/8 scale)."""
    B, O = points.shape[:2]
    h, w = out_hw
    dev = points.device
    pts = to_output_coords(points.float())                          # (B, O, 9, 2)
    ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, 1, 1, h, 1)
    xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, 1, 1, w)
    dx = xs - pts[..., 0, None, None]                                # (B, O, 9, h, w)
    dy = ys - pts[..., 1, None, None]
    d2 = dx * dx + dy * dy
    mask = valid.view(B, O, 1, 1, 1).float()
    gauss = torch.exp(-d2 / (2.0 * sigma * sigma)) * mask
    beliefs = gauss.amax(dim=1) if O else torch.zeros(B, 9, h, w, device=dev)

    vec = pts[:, :, 8:9, :] - pts[:, :, :8, :]                       # corner -> centroid
    vec = vec / vec.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    disk = (d2[:, :, :8] <= radius * radius).float() * mask          # (B, O, 8, h, w)
    field = disk.unsqueeze(3) * vec[..., None, None]                 # (B, O, 8, 2, h, w)
    count = disk.sum(dim=1).clamp_min(1.0).unsqueeze(2)             # (B, 8, 1, h, w)
    affinities = (field.sum(dim=1) / count).reshape(B, 16, h, w)
    return beliefs, affinities


def belief_peaks(beliefs):
    """Arg-max of each belief map in crop pixels: (B, 9, 2) and the peak values (B, 9)."""
    B, C, h, w = beliefs.shape
    values, idx = beliefs.reshape(B, C, -1).max(dim=-1)
    xy = torch.stack([(idx % w).float(), (idx // w).float()], dim=-1)
    return to_crop_coords(xy), values


def ideal_maps(points_px, size, sigma=0.5):
    """What a perfect network outputs for a frame of ``size`` (width, height) whose objects
    have the 9 keypoints ``points_px`` (O, 9, 2, pixels): numpy beliefs (9, h/8, w/8) and
    affinities (16, h/8, w/8), as the trainer's targets. Tests and benchmarks decode these."""
    width, height = size
    pts = torch.as_tensor(points_px, dtype=torch.float32).reshape(1, -1, 9, 2)
    valid = torch.ones(1, pts.shape[1], dtype=torch.bool)
    beliefs, affinities = make_targets(pts, valid, (height // STRIDE, width // STRIDE), sigma)
    return beliefs[0].numpy(), affinities[0].numpy()
