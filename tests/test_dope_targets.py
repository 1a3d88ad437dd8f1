"""Batch targets and joint image/keypoint augmentation."""
import numpy as np
import torch

from pose_train.dope.augment import (GeometryParams, PhotometricParams, photometric,
                                     random_affine, step_generator, warp_sample)
from pose_train.dope.targets import belief_peaks, make_targets, to_output_coords


def _points():
    # One object in a 64 px crop: corners around a centroid at crop pixel (35.5, 27.5).
    corners = [[20, 12], [52, 12], [52, 44], [20, 44], [24, 16], [48, 16], [48, 40], [24, 40]]
    return torch.tensor([corners + [[35.5, 27.5]]], dtype=torch.float32)[None]   # (1, 1, 9, 2)


def test_belief_peaks_land_on_keypoints():
    pts = _points()
    beliefs, affinities = make_targets(pts, torch.ones(1, 1, dtype=torch.bool), (8, 8), sigma=0.5)
    assert beliefs.shape == (1, 9, 8, 8) and affinities.shape == (1, 16, 8, 8)
    peaks, values = belief_peaks(beliefs)
    # Peaks sit on the output pixel nearest each keypoint: within half a stride (4 crop px).
    assert ((peaks - pts[0, 0]).abs() <= 4.0).all()
    assert (values > 0.3).all()


def test_affinities_are_unit_vectors_toward_centroid_near_corners():
    pts = _points()
    _, aff = make_targets(pts, torch.ones(1, 1, dtype=torch.bool), (8, 8), sigma=0.5, radius=1.0)
    out = to_output_coords(pts[0, 0])
    for k in range(8):
        x, y = int(round(out[k, 0].item())), int(round(out[k, 1].item()))
        v = aff[0, 2 * k:2 * k + 2, y, x]
        expected = (out[8] - out[k]) / (out[8] - out[k]).norm()
        torch.testing.assert_close(v, expected)
    far = aff[0, :, 0, 7]            # a corner of the map far from every keypoint
    assert far.abs().sum() == 0


def test_padded_object_slots_make_no_targets():
    pts = torch.cat([_points(), _points() + 100], dim=1)        # second slot is padding
    valid = torch.tensor([[True, False]])
    b1, a1 = make_targets(pts, valid, (8, 8), sigma=0.5)
    b0, a0 = make_targets(_points(), torch.ones(1, 1, dtype=torch.bool), (8, 8), sigma=0.5)
    torch.testing.assert_close(b1, b0)
    torch.testing.assert_close(a1, a0)


def test_warp_moves_image_and_keypoints_together():
    rng = np.random.default_rng(0)
    for trial in range(5):
        img = np.zeros((120, 160, 3), np.uint8)
        p = np.array([[[60.0 + 10 * trial, 50.0]]], np.float32)
        img[49:52, 59 + 10 * trial:62 + 10 * trial] = 255   # a 3x3 block centred on the keypoint
        m = random_affine(rng, 160, 120, 96, GeometryParams(), train=True)
        out, q = warp_sample(img, p, m, 96)
        if not (0 <= q[0, 0, 0] < 96 and 0 <= q[0, 0, 1] < 96):
            continue
        y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
        assert abs(x - q[0, 0, 0]) <= 1.0 and abs(y - q[0, 0, 1]) <= 1.0


def test_strong_downscale_keeps_alignment():
    img = np.zeros((480, 640, 3), np.uint8)
    img[236:244, 316:324] = 255                          # 8x8 block centred at (319.5, 239.5)
    m = random_affine(np.random.default_rng(0), 640, 480, 32, GeometryParams(), train=False)
    out, q = warp_sample(img, np.array([[[319.5, 239.5]]], np.float32), m, 32)
    y, x = np.unravel_index(out[..., 0].argmax(), out.shape[:2])
    assert abs(x - q[0, 0, 0]) <= 1.0 and abs(y - q[0, 0, 1]) <= 1.0
    # Constant fill, not a reflection: outside the image the crop is the fill colour.
    m2 = random_affine(np.random.default_rng(1), 64, 48, 32, GeometryParams(), train=False)
    m2[:, 2] += 20
    filled, _ = warp_sample(np.full((48, 64, 3), 9, np.uint8), np.zeros((0, 9, 2)), m2, 32)
    assert (filled[0, 0] == (124, 116, 104)).all()


def test_photometric_is_reproducible_from_its_seed():
    x = torch.rand(2, 16, 16, 3)
    a = photometric(x, step_generator("cpu", 0, 1, 2, 0), PhotometricParams())
    b = photometric(x, step_generator("cpu", 0, 1, 2, 0), PhotometricParams())
    c = photometric(x, step_generator("cpu", 0, 1, 3, 0), PhotometricParams())
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_folded_colour_affine_equals_the_three_steps():
    from pose_train.dope.augment import colour_affine
    x = torch.rand(3, 3, 5, 4, dtype=torch.float64)
    bright, contrast, sat = (torch.rand(3, dtype=torch.float64) for _ in range(3))
    v = lambda t: t.view(3, 1, 1, 1)
    y = x + v(bright)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * v(contrast) + mean
    gray = 0.299 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3]
    y = (y - gray) * v(sat) + gray
    m, k = colour_affine(x.mean(dim=(1, 2, 3)), bright, contrast, sat)
    hwc = x.permute(0, 2, 3, 1).reshape(3, -1, 3)                   # photometric's layout
    folded = torch.baddbmm(k, hwc, m.transpose(1, 2)).view(3, 5, 4, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(folded, y)
