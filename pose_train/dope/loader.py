"""Dataset and DataLoader for DOPE training: decode (cv2) + one affine per sample (applied here,
or on the GPU for the whole batch when ``device_warp``).

PNG decoding is the largest per-sample CPU cost (several ms for a 640x480 frame), so decoded
frames can be kept in a raw uint8 file (``DecodedCache``): the first epoch decodes and fills
it, later epochs read pixels straight from the page cache / disk.
Everything else (colour jitter, noise, normalisation, belief/affinity targets) happens batch-wise
on the training device; see augment.py and targets.py. Workers therefore return small uint8
crops, which keeps both the per-sample CPU cost and the host->device copy low.
"""
import hashlib
import os
import shutil
import sys

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pose_train.dope.augment import GeometryParams, random_affine, transform_points, warp_sample
from pose_train_py27.dope_io import InputError
from pose_train_py27.image_files import decode_checked

MAX_OBJECTS_CAP = 16


class DecodedCache:
    """Decoded RGB frames in one flat uint8 file plus one "filled" byte per frame.

    Rows are written by whichever loader worker decodes the frame first; a sampler never hands
    the same index to two workers within an epoch, so writers never collide. Workers open the
    files lazily: a memmap must not be pickled into them (that would copy the data).
    """

    def __init__(self, path, sizes):
        self.path = path
        nbytes = [int(w) * int(h) * 3 for w, h in sizes]
        self.sizes = [(int(w), int(h)) for w, h in sizes]
        self.offsets = np.concatenate([[0], np.cumsum(nbytes)]).astype(np.int64)
        self._data = self._flags = None

    @property
    def nbytes(self):
        return int(self.offsets[-1])

    def create(self):
        """Make the (sparse) files; call once, before the workers start."""
        if not os.path.exists(self.path + ".flags"):
            np.memmap(self.path, np.uint8, "w+", shape=(max(1, self.nbytes),)).flush()
            np.memmap(self.path + ".flags", np.uint8, "w+", shape=(len(self.sizes),)).flush()
        return self

    def _open(self):
        if self._data is None:
            self._data = np.memmap(self.path, np.uint8, "r+", shape=(max(1, self.nbytes),))
            self._flags = np.memmap(self.path + ".flags", np.uint8, "r+",
                                    shape=(len(self.sizes),))

    def get(self, index):
        self._open()
        if not self._flags[index]:
            return None
        w, h = self.sizes[index]
        return np.array(self._data[self.offsets[index]:self.offsets[index + 1]]).reshape(h, w, 3)

    def put(self, index, image):
        self._open()
        w, h = self.sizes[index]
        if image.shape != (h, w, 3):
            return          # header and pixels disagree: just keep decoding this one
        self._data[self.offsets[index]:self.offsets[index + 1]] = image.reshape(-1)
        self._flags[index] = 1   # after the pixels: a reader never sees a half row as filled

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_data"] = state["_flags"] = None
        return state


def decoded_cache(samples, root, mode="auto"):
    """A DecodedCache for these samples under ``root``, or None (mode off, or not enough disk).

    auto: used when the decoded frames take at most half the free space of ``root``. The file
    name hashes the image paths, sizes and modification times, so a changed dataset gets a
    fresh cache.
    """
    if mode == "off" or not samples:
        return None
    key = hashlib.sha1()
    for s in samples:
        key.update(("%s|%s|%s\n" % (s.image, s.size, os.path.getmtime(s.image))).encode())
    cache = DecodedCache(os.path.join(root, "decoded-%s.u8" % key.hexdigest()[:16]),
                         [s.size for s in samples])
    os.makedirs(root, exist_ok=True)
    if not os.path.exists(cache.path + ".flags") and \
            cache.nbytes > shutil.disk_usage(root).free // 2:
        return None
    return cache


class DopeDataset(Dataset):
    """Items: (image uint8 (S, S, 3) RGB, points (M, 9, 2) crop pixels, valid (M,) bool, index)."""

    def __init__(self, samples, imagesize, seed=0, train=True, geometry=None, cache=None,
                 device_warp=False):
        self.samples = samples
        self.imagesize = int(imagesize)
        self.seed = int(seed)
        self.train = train
        self.geometry = geometry or GeometryParams()
        self.epoch = 0
        most = max((len(s.points) for s in samples), default=1)
        self.max_objects = max(1, min(MAX_OBJECTS_CAP, most))
        self.decode_failures = 0
        self.cache = cache
        # device_warp: return the whole frame + its affine; the crop is cut batch-wise on the
        # GPU (augment.warp_batch). Items are then (frame, matrix, points, valid, index).
        self.device_warp = bool(device_warp)

    def set_epoch(self, epoch):
        """Epoch for plain integer keys (in-process use); loaders pass (epoch, index) keys."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.samples)

    def _decode(self, index, sample):
        if self.cache is not None:
            cached = self.cache.get(index)
            if cached is not None:
                return cached, True
        try:
            # Also catches what the scan cannot see without decoding: a complete JPEG whose data
            # libjpeg calls corrupt (it would train on garbage pixels, saying so without a name).
            img = decode_checked(sample.image)
        except InputError as err:
            # A damaged file must not stop a long run: train on a blank frame with no objects,
            # and say which. Not cached, so a repaired file is read again next epoch.
            self.decode_failures += 1
            print("pose-train: warning: %s; trained as an empty frame this time" % err,
                  file=sys.stderr, flush=True)
            w, h = sample.size
            return np.zeros((h, w, 3), np.uint8), False
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if self.cache is not None:
            self.cache.put(index, img)
        return img, True

    def __getitem__(self, key):
        # EpochBatches hands out (epoch, index): persistent workers learn the epoch that way.
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        sample = self.samples[index]
        img, ok = self._decode(index, sample)
        # One generator per (seed, epoch, index): the same draw whatever the worker count.
        rng = np.random.default_rng([self.seed, epoch, index])
        h, w = img.shape[:2]
        matrix = random_affine(rng, w, h, self.imagesize, self.geometry, self.train)
        pts = sample.points[:self.max_objects] if ok else np.zeros((0, 9, 2), np.float32)
        if self.device_warp:
            crop, pts = img, transform_points(pts, matrix)
        else:
            crop, pts = warp_sample(img, pts, matrix, self.imagesize)
        points = np.zeros((self.max_objects, 9, 2), np.float32)
        valid = np.zeros((self.max_objects,), bool)
        points[:len(pts)] = pts
        valid[:len(pts)] = True
        if self.device_warp:
            return (torch.from_numpy(crop), torch.from_numpy(matrix.astype(np.float32)),
                    torch.from_numpy(points), torch.from_numpy(valid), index)
        return torch.from_numpy(crop), torch.from_numpy(points), torch.from_numpy(valid), index


def device_warp_pays(samples, imagesize):
    """Ship whole frames to the GPU only when they are all one size (a batch must stack) and
    not much bigger than the crop (past ~4x the crop's pixels the host->device copy and the
    pinning memcpy cost more than the CPU warp saves)."""
    sizes = {s.size for s in samples}
    if len(sizes) != 1:
        return False
    w, h = sizes.pop()
    return w * h <= 4 * imagesize * imagesize


def default_workers(world_size=1):
    """Spread this machine's cores over the local ranks, one core left for the main process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(16, (cores or 1) // max(1, world_size) - 1))


class EpochBatches(Sampler):
    """Batches of (epoch, index) in step order, that can start at any step of an epoch.

    One index sampler per batch of an optimizer step (several with gradient accumulation: see
    distributed.make_sampler); step s yields batch s of each in turn. The epoch travels with
    each index, so loader workers can stay alive across epochs and still draw each epoch's
    augmentation; ``skip`` steps let a resumed run start mid-epoch.
    """

    def __init__(self, samplers, batch_size):
        self.samplers, self.batch_size, self.epoch, self.skip = list(samplers), batch_size, 0, 0

    @property
    def accumulate(self):
        return len(self.samplers)

    def set_epoch(self, epoch, skip=0):
        self.epoch, self.skip = int(epoch), int(skip)
        for sampler in self.samplers:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)

    def steps(self):
        """Optimizer steps in a whole epoch (the last batches may be short)."""
        return -(-len(self.samplers[0]) // self.batch_size)

    def __iter__(self):
        orders, b = [list(s) for s in self.samplers], self.batch_size
        for step in range(self.skip, self.steps()):
            for order in orders:
                yield [(self.epoch, i) for i in order[step * b:(step + 1) * b]]

    def __len__(self):
        return max(0, self.steps() - self.skip) * self.accumulate


def _worker_init(_):
    # Each worker is one core's worth of work; OpenCV's own threads would oversubscribe.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(dataset, sampler, batch_size, workers, pin_memory=False, drop_last=True):
    """``sampler`` may be an EpochBatches, which then makes the batches itself.

    Workers are started by a fork server, not forked from this process: a fork inherits the
    parent's OpenCV/OpenMP thread-pool state and can deadlock after the main process has used
    them (generating data, drawing previews). They persist across epochs to pay that start once.
    """
    batching = (dict(batch_sampler=sampler) if isinstance(sampler, EpochBatches) else
                dict(batch_size=batch_size, sampler=sampler, drop_last=drop_last))
    return DataLoader(dataset, num_workers=workers, **batching,
                      pin_memory=pin_memory, persistent_workers=workers > 0,
                      worker_init_fn=_worker_init if workers else None,
                      multiprocessing_context="forkserver" if workers else None,
                      prefetch_factor=4 if workers else None)
