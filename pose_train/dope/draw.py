"""PNG grids of what the network is trained on: augmented crops, cuboids, belief maps."""
import os

import cv2
import numpy as np

from pose_train.dope.augment import NORMALIZATIONS, denormalize
from pose_train.errors import UserError
from pose_train.files import atomic_write
from pose_train_py27.overlay import caption, draw_cuboid, heat, tile


def batch_grid(images, points, valid, beliefs, cols=4, captions=None,
               normalization=NORMALIZATIONS["ros"]):
    """One tile per sample: augmented crop with cuboids | max over the 9 belief maps.

    captions: one short text per sample, written on the tile (file name, or why no cuboid).
    """
    crops = denormalize(images, normalization)
    zoom = max(1, 256 // crops.shape[1])     # small training crops are enlarged to be readable
    size = crops.shape[1] * zoom
    thickness = max(1, size // 200)
    bel = beliefs.detach().float().cpu().amax(dim=1).numpy()
    tiles = []
    for b in range(crops.shape[0]):
        img = cv2.resize(crops[b], (size, size), interpolation=cv2.INTER_NEAREST)
        for o in range(int(valid[b].sum())):
            # Pixel-centre aware scaling of the keypoints onto the enlarged tile.
            draw_cuboid(img, (points[b, o].cpu().numpy() + 0.5) * zoom - 0.5, thickness)
        if captions:
            caption(img, captions[b], (3, 12), 0.35)
        tiles.append(np.concatenate([img, heat(bel[b], (size, size))], axis=1))
    return tile(tiles, cols)


def save_grid(path, grid):
    """The picture written atomically; a full disk is one line naming it (atomic_write)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError("%s: OpenCV could not encode the picture" % path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return atomic_write(path, lambda f: f.write(data.tobytes()))
