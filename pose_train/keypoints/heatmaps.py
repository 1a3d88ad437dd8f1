"""Heatmap targets, decoding and PCK, batched in torch (they run on the training device).

Coordinates: pixel centres are integers (OpenCV's convention). The network's output
stride is 4, so heatmap cell j covers input pixels 4j..4j+3, whose centre is 4j+1.5:
    input = 4 * heat + 1.5        heat = (input - 1.5) / 4
Targets are Gaussians evaluated at the exact sub-pixel location (no rounding), so a
decoder that refines the argmax can recover positions finer than one cell.
"""
import torch

STRIDE = 4


def to_heat(xy):
    return (xy - 1.5) / STRIDE


def from_heat(xy):
    return xy * STRIDE + 1.5


def gaussian_targets(kp_heat, weight, height, width, sigma):
    """(B,K,2) keypoints in heatmap cells -> (B,K,H,W) Gaussians with peak 1, zero where weight is 0."""
    ys = torch.arange(height, device=kp_heat.device, dtype=kp_heat.dtype).view(1, 1, height, 1)
    xs = torch.arange(width, device=kp_heat.device, dtype=kp_heat.dtype).view(1, 1, 1, width)
    dx = xs - kp_heat[..., 0, None, None]
    dy = ys - kp_heat[..., 1, None, None]
    g = torch.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma))
    return g * weight[..., None, None]


def masked_mse(pred, target, weight):
    """Mean squared error over the heatmap cells of keypoints with weight > 0.

    AlphaPose averages over every map; here hidden keypoints carry no gradient at all, so
    the normaliser counts only the maps that contribute.
    """
    per_map = ((pred.float() - target) ** 2).mean(dim=(2, 3))
    return (per_map * weight).sum() / weight.sum().clamp(min=1.0)


def decode(heat):
    """(B,K,H,W) -> (keypoints (B,K,2) in heatmap cells, confidence (B,K) = peak value).

    Argmax, then a quadratic fit on the log of the three cells around the peak along each
    axis: exact for a Gaussian peak, bounded to half a cell so noise cannot throw it off.
    """
    b, k, h, w = heat.shape
    flat = heat.float().reshape(b, k, -1)
    conf, idx = flat.max(dim=2)
    x, y = (idx % w), (idx // w)
    logh = torch.log(heat.float().clamp(min=1e-6))

    def offset(c_prev, c0, c_next):
        denom = c_prev - 2 * c0 + c_next
        off = 0.5 * (c_prev - c_next) / torch.where(denom.abs() > 1e-6, denom, torch.ones_like(denom))
        return torch.where(denom < -1e-6, off.clamp(-0.5, 0.5), torch.zeros_like(off))

    bi = torch.arange(b, device=heat.device)[:, None].expand(b, k)
    ki = torch.arange(k, device=heat.device)[None, :].expand(b, k)
    xl, xr = (x - 1).clamp(min=0), (x + 1).clamp(max=w - 1)
    yu, yd = (y - 1).clamp(min=0), (y + 1).clamp(max=h - 1)
    dx = offset(logh[bi, ki, y, xl], logh[bi, ki, y, x], logh[bi, ki, y, xr])
    dy = offset(logh[bi, ki, yu, x], logh[bi, ki, y, x], logh[bi, ki, yd, x])
    # At the border there is no neighbour on one side: keep the integer position.
    dx = torch.where((x > 0) & (x < w - 1), dx, torch.zeros_like(dx))
    dy = torch.where((y > 0) & (y < h - 1), dy, torch.zeros_like(dy))
    kp = torch.stack([x.float() + dx, y.float() + dy], dim=2)
    valid = conf > 0
    return torch.where(valid[..., None], kp, torch.full_like(kp, -1.0)), conf


def pck(pred, true, weight, ref, alpha=0.2):
    """Fraction of weighted keypoints within alpha * ref (ref per sample, same units as pred)."""
    dist = torch.linalg.norm(pred - true, dim=2)
    hit = (dist <= alpha * ref[:, None]).float() * weight
    return float(hit.sum() / weight.sum().clamp(min=1.0))
