"""The DOPE recipe as a baseline, re-implemented from its published description (not its code).

Loader, per sample on the CPU, the way DOPE's current trainer works: decode the whole frame,
random 400 px crop, rotation with a reflected border, brightness/contrast jitter, Gaussian noise
over the float image, ImageNet normalisation, then belief maps (one Gaussian per keypoint, a
Python loop over keypoints) and affinity maps (a disk of unit vectors per corner) at 1/8 size,
and collation. DOPE decodes with PIL and augments with albumentations; neither is installed
here, so the same operations are done with cv2/numpy (cv2's PNG decode is the faster of the two,
which flatters the baseline, not us).
"""
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pose_train_py27.dope_io import IMAGENET_MEAN, IMAGENET_STD

MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)


def _belief_maps(points, size, sigma):
    maps = np.zeros((9, size, size), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    for k, (x, y) in enumerate(points):        # one map per keypoint, as DOPE does
        maps[k] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma * sigma))
    return maps


def _affinity_maps(points, size, radius):
    maps = np.zeros((16, size, size), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = points[8]
    for k in range(8):
        x, y = points[k]
        v = np.array([cx - x, cy - y], np.float32)
        v /= max(float(np.linalg.norm(v)), 1e-6)
        disk = ((xs - x) ** 2 + (ys - y) ** 2) <= radius * radius
        maps[2 * k][disk] = v[0]
        maps[2 * k + 1][disk] = v[1]
    return maps


class DopeRecipeDataset(Dataset):
    """(normalised float image, beliefs, affinities) per sample, all built on the CPU."""

    def __init__(self, samples, crop=400, seed=0):
        self.samples, self.crop, self.rng = samples, crop, np.random.default_rng(seed)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        s = self.samples[index]
        img = cv2.cvtColor(cv2.imread(s.image, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        pts = s.points[0].astype(np.float32) if len(s.points) else np.zeros((9, 2), np.float32)
        img, pts = self._geometry(img, pts)
        x = img.astype(np.float32) / 255.0
        x = x * self.rng.uniform(0.85, 1.15) + self.rng.uniform(-0.2, 0.2)      # contrast, brightness
        x = x + self.rng.normal(0, self.rng.uniform(0.0, 0.04), x.shape).astype(np.float32)
        x = (np.clip(x, 0, 1) - MEAN) / STD
        out = self.crop // 8
        small = (pts + 0.5) / 8 - 0.5
        beliefs = _belief_maps(small, out, sigma=0.5)
        affinities = _affinity_maps(small, out, radius=1.0)
        return (torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),
                torch.from_numpy(beliefs), torch.from_numpy(affinities))

    def _geometry(self, img, pts):
        """Random crop (upscaling first if the frame is smaller), then rotation of the crop with
        a reflected border (crop first is the cheaper order, which favours the baseline)."""
        h, w = img.shape[:2]
        if min(h, w) < self.crop:
            f = self.crop / float(min(h, w))
            img = cv2.resize(img, None, fx=f, fy=f)
            pts = pts * f
            h, w = img.shape[:2]
        x0 = int(self.rng.integers(0, w - self.crop + 1))
        y0 = int(self.rng.integers(0, h - self.crop + 1))
        img, pts = img[y0:y0 + self.crop, x0:x0 + self.crop], pts - [x0, y0]
        c = self.crop / 2.0
        m = cv2.getRotationMatrix2D((c, c), self.rng.uniform(-180, 180), 1.0)
        img = cv2.warpAffine(img, m, (self.crop, self.crop), borderMode=cv2.BORDER_REFLECT_101)
        return img, pts @ m[:, :2].T + m[:, 2]


def recipe_loss(model, images, beliefs, affinities):
    """fp32, sum over stages of MSE: DOPE's loss."""
    out_b, out_a = model(images)
    loss = 0.0
    for b, a in zip(out_b, out_a):
        loss = loss + ((b - beliefs) ** 2).mean() + ((a - affinities) ** 2).mean()
    return loss
