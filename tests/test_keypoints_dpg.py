"""DPG statistics, heatmap targets and decoding, and the batched crop/augment geometry."""
import math

import numpy as np
import pytest
import torch

from pose_train.keypoints import dpg, heatmaps, transforms


def _boxes(n, w=100.0, h=60.0):
    return torch.tensor([[200.0, 150.0, 200.0 + w, 150.0 + h]]).repeat(n, 1)


def test_jitter_matches_alphapose_statistics():
    n = 40000
    gen = torch.Generator().manual_seed(0)
    boxes = _boxes(n)
    out, patch = dpg.jitter(boxes, gen)
    assert patch.float().mean().item() == pytest.approx(dpg.PATCH_P, abs=0.01)
    edge = ~patch
    scale = torch.tensor([100.0, 60.0, 100.0, 60.0])
    rel = ((out - boxes) / scale)[edge]
    for i, (mean, std) in enumerate(dpg.EDGE_NORMAL):
        assert rel[:, i].mean().item() == pytest.approx(mean, abs=0.004)
        assert rel[:, i].std().item() == pytest.approx(std, rel=0.03)
    # Sub-patches lie inside the box and keep its aspect ratio, scaled by (0.85, 1).
    p = out[patch]
    assert torch.all(p[:, 0] >= 200 - 1e-4) and torch.all(p[:, 2] <= 300 + 1e-4)
    ratio = (p[:, 2] - p[:, 0]) / 100.0
    torch.testing.assert_close((p[:, 3] - p[:, 1]) / 60.0, ratio)
    assert ratio.min() >= 0.85 and ratio.max() <= 1.0


def test_crop_threshold_scales_with_kpnum():
    assert dpg.crop_threshold(17) == 13          # AlphaPose's value for 17 joints
    assert dpg.crop_threshold(9) == 6 and dpg.crop_threshold(8) == 6


def test_crop_branch_needs_enough_keypoints_inside():
    n, k = 20000, 9
    gen = torch.Generator().manual_seed(1)
    boxes = _boxes(n)
    inside = torch.tensor([250.0, 180.0]).repeat(n, k, 1)
    vis = torch.full((n, k), 2)
    cut = dpg.crop_branch(boxes, inside, vis, gen)
    changed = (cut != boxes).any(1).float().mean().item()
    assert changed == pytest.approx(dpg.CROP_P, abs=0.01)
    parts = cut[(cut != boxes).any(1)]
    area = (parts[:, 2] - parts[:, 0]) * (parts[:, 3] - parts[:, 1]) / 6000.0
    quarter = torch.isclose(area, torch.tensor(0.25))
    assert torch.all(quarter | torch.isclose(area, torch.tensor(0.5)))
    assert quarter.float().mean().item() == pytest.approx(0.5, abs=0.03)
    # Only 6 of 9 keypoints inside (threshold: more than 6): never cut.
    vis_few = vis.clone()
    vis_few[:, 6:] = 0
    assert torch.equal(dpg.crop_branch(boxes, inside, vis_few, gen), boxes)


def test_clamped_boxes_stay_in_the_image():
    gen = torch.Generator().manual_seed(2)
    boxes = torch.tensor([[0.0, 0.0, 60.0, 60.0]]).repeat(5000, 1)
    out = dpg.apply_dpg(boxes, torch.zeros(5000, 4, 2), torch.zeros(5000, 4), 64, 64, gen)
    assert out.min() >= 0 and out.max() <= 63
    assert torch.all(out[:, 2] - out[:, 0] >= dpg.MIN_SIZE)


def test_decode_recovers_subpixel_positions():
    kp = torch.tensor([[[5.3, 7.8], [2.25, 3.6], [8.9, 1.45]]])
    target = heatmaps.gaussian_targets(kp, torch.ones(1, 3), 16, 12, 1.0)
    pred, conf = heatmaps.decode(target)
    torch.testing.assert_close(pred, kp, atol=1e-3, rtol=0)
    assert torch.all(conf > 0.8)
    # Weight 0 gives an empty map and no peak position.
    empty = heatmaps.gaussian_targets(kp, torch.zeros(1, 3), 16, 12, 1.0)
    assert torch.all(heatmaps.decode(empty)[0] == -1)


def test_masked_mse_ignores_hidden_keypoints():
    target = torch.zeros(1, 2, 4, 4)
    pred = torch.zeros(1, 2, 4, 4)
    pred[0, 1] = 5.0                       # wrong, but the keypoint is hidden
    assert heatmaps.masked_mse(pred, target, torch.tensor([[1.0, 0.0]])).item() == 0.0


def _dot_data(size=64, dot=(40.0, 22.0)):
    crops = torch.zeros(1, size, size, 3, dtype=torch.uint8)
    crops[0, int(dot[1]), int(dot[0])] = 255
    return {"crops": crops, "boxes": torch.tensor([[16.0, 16.0, 48.0, 48.0]]),
            "kps": torch.tensor([[list(dot)]]), "vis": torch.tensor([[2]])}


@pytest.mark.parametrize("angle_deg,scale", [(0.0, 1.0), (30.0, 1.2), (-40.0, 0.8)])
def test_warp_and_targets_agree(angle_deg, scale):
    """The target peak sits where the warped image shows the keypoint's pixel."""
    data = _dot_data()
    box = data["boxes"]
    affine = transforms.box_affine(box, (64, 64), torch.tensor([scale]),
                                   torch.tensor([math.radians(angle_deg)]))
    img = transforms.warp(data["crops"], affine, (64, 64))[0].sum(0)
    bright = torch.nonzero(img == img.max())[0].float()              # (y, x)
    kp = transforms.invert_points(affine, data["kps"])[0, 0]
    assert abs(kp[0] - bright[1]) <= 1.0 and abs(kp[1] - bright[0]) <= 1.0
    back = transforms.apply_points(affine, kp.view(1, 1, 2))
    torch.testing.assert_close(back, data["kps"], atol=1e-4, rtol=0)


def test_make_batch_shapes_and_weights():
    data = _dot_data()
    gen = torch.Generator().manual_seed(0)
    inputs, target, weight, _ = transforms.make_batch(
        data, torch.tensor([0, 0]), (64, 64), 1.0, gen=gen, aug=transforms.Augment(), use_dpg=True)
    assert inputs.shape == (2, 3, 64, 64) and target.shape == (2, 1, 16, 16)
    assert torch.all((weight == 0) | (target.amax(dim=(2, 3)) > 0.3))
    data["vis"][:] = 1                     # hidden: no target unless --train_occluded
    _, target, weight, _ = transforms.make_batch(data, torch.tensor([0]), (64, 64), 1.0)
    assert weight.sum() == 0 and target.abs().sum() == 0
    _, _, weight, _ = transforms.make_batch(data, torch.tensor([0]), (64, 64), 1.0, train_occluded=True)
    assert weight.sum() == 1


def test_no_flip_by_default():
    gen = torch.Generator().manual_seed(0)
    _, _, _, flip = transforms.sample_augment(1000, transforms.Augment(), gen, torch.device("cpu"))
    assert not flip.any()
    _, _, _, flip = transforms.sample_augment(1000, transforms.Augment(flip=True), gen, torch.device("cpu"))
    assert 0.4 < flip.float().mean().item() < 0.6
    np.testing.assert_equal(transforms.MEAN, (0.406, 0.457, 0.480))
