"""What both generators put around the object: procedural backgrounds, and the --distance
range. Its own module so that the cuboid generator (synth) and the mesh generator
(mesh_frames) share it without importing each other."""
import cv2
import numpy as np

from pose_train.errors import UserError

NEAREST, FARTHEST = 0.1, 20.0    # metres: the --distance a pinhole camera makes sense of

# Frame size when neither --width/--height nor a --camera file gives one.
DEFAULT_SIZE = (640, 480)


def parse_distance(text):
    """``--distance 0.35,0.9`` (metres, the object's centre from the camera) -> (0.35, 0.9)."""
    try:
        low, high = (float(v) for v in str(text).split(","))
    except ValueError:
        low = high = 0.0
    # Nearer than ~1.5 box diagonals puts the camera at or inside the box; past 20 m the
    # box is a speck at any frame size this generator makes.
    if not NEAREST <= low <= high <= FARTHEST:
        raise UserError("--distance takes MIN,MAX in metres with %g <= MIN <= MAX <= %g, e.g. "
                        "0.35,0.9; got %r" % (NEAREST, FARTHEST, text))
    return low, high


def background(rng, width, height, noise=True):
    """Smooth gradient + random shapes + noise: cheap clutter with edges and colour. The mesh
    generator adds its sensor noise over the whole frame (``noise=False``)."""
    gx = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    gy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    c0, c1, c2 = (rng.uniform(0, 255, 3).astype(np.float32) for _ in range(3))
    img = c0 + (c1 - c0) * gx + (c2 - c0) * gy * 0.5
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(5, 15))):
        color = rng.integers(0, 256, 3).tolist()
        p = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            cv2.circle(img, p, int(rng.integers(5, max(6, width // 6))), color, -1)
        else:
            q = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.rectangle(img, p, q, color, -1)
    if not noise:
        return img
    noise = rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
