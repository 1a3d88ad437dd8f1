"""PNG grids of what the network is trained on: augmented crops, cuboids, belief maps."""
import math
import os

import cv2
import numpy as np

from pose_train.dope.augment import NORMALIZATIONS, denormalize
from pose_train.dope.geometry import EDGES

# One colour per cuboid face direction (RGB), so a flipped cuboid is visible at a glance.
_FRONT, _REAR, _SIDE, _CENTRE = (255, 60, 60), (60, 120, 255), (60, 230, 60), (255, 255, 0)


def draw_cuboid(img, pts, thickness=1):
    """Cuboid edges (front red, rear blue, connecting green) and the centroid, in place."""
    p = [tuple(int(round(v)) for v in xy) for xy in pts]
    for i, j in EDGES:
        color = _FRONT if i < 4 and j < 4 else (_REAR if i >= 4 else _SIDE)
        cv2.line(img, p[i], p[j], color, thickness, cv2.LINE_AA)
    cv2.circle(img, p[8], max(2, thickness + 1), _CENTRE, -1, cv2.LINE_AA)
    return img


def _heat(belief_max, size):
    m = cv2.resize(belief_max, (size, size), interpolation=cv2.INTER_NEAREST)
    m = (np.clip(m, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(m, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


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
            cv2.putText(img, captions[b], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2,
                        cv2.LINE_AA)
            cv2.putText(img, captions[b], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([img, _heat(bel[b], size)], axis=1))
    rows = int(math.ceil(len(tiles) / float(cols)))
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * cols - len(tiles))
    return np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1)
                           for r in range(rows)], axis=0)


def save_grid(path, grid):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError("could not write %s" % path)
    return path
