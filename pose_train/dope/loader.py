"""Dataset and DataLoader for DOPE training: decode (cv2) + one affine warp per sample.

Everything else (colour jitter, noise, normalisation, belief/affinity targets) happens batch-wise
on the training device; see augment.py and targets.py. Workers therefore return small uint8
crops, which keeps both the per-sample CPU cost and the host->device copy low.
"""
import os

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pose_train.dope.augment import GeometryParams, random_affine, warp_sample

MAX_OBJECTS_CAP = 16


class DopeDataset(Dataset):
    """Items: (image uint8 (S, S, 3) RGB, points (M, 9, 2) crop pixels, valid (M,) bool, index)."""

    def __init__(self, samples, imagesize, seed=0, train=True, geometry=None):
        self.samples = samples
        self.imagesize = int(imagesize)
        self.seed = int(seed)
        self.train = train
        self.geometry = geometry or GeometryParams()
        self.epoch = 0
        most = max((len(s.points) for s in samples), default=1)
        self.max_objects = max(1, min(MAX_OBJECTS_CAP, most))
        self.decode_failures = 0

    def set_epoch(self, epoch):
        """Workers are re-created each epoch, so they see this value (no persistent workers)."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.samples)

    def _decode(self, sample):
        img = cv2.imread(sample.image, cv2.IMREAD_COLOR)
        if img is None:
            # The scan checks headers and trailers; a file damaged inside still must not stop
            # a long run: train on a blank frame with no objects and count it.
            self.decode_failures += 1
            w, h = sample.size
            return np.zeros((h, w, 3), np.uint8), False
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), True

    def __getitem__(self, index):
        sample = self.samples[index]
        img, ok = self._decode(sample)
        # One generator per (seed, epoch, index): the same draw whatever the worker count.
        rng = np.random.default_rng([self.seed, self.epoch, index])
        h, w = img.shape[:2]
        matrix = random_affine(rng, w, h, self.imagesize, self.geometry, self.train)
        pts = sample.points[:self.max_objects] if ok else np.zeros((0, 9, 2), np.float32)
        crop, pts = warp_sample(img, pts, matrix, self.imagesize)
        points = np.zeros((self.max_objects, 9, 2), np.float32)
        valid = np.zeros((self.max_objects,), bool)
        points[:len(pts)] = pts
        valid[:len(pts)] = True
        return torch.from_numpy(crop), torch.from_numpy(points), torch.from_numpy(valid), index


def default_workers(world_size=1):
    """Spread this machine's cores over the local ranks, one core left for the main process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(16, (cores or 1) // max(1, world_size) - 1))


def _worker_init(_):
    # Each worker is one core's worth of work; OpenCV's own threads would oversubscribe.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(dataset, sampler, batch_size, workers, pin_memory=False, drop_last=True):
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=drop_last, persistent_workers=False,
                      worker_init_fn=_worker_init if workers else None,
                      prefetch_factor=4 if workers else None)
