"""The embedded object: a drinks carton of our own making (8 x 11 x 5 cm, rounded vertical
edges), written as OBJ + MTL + PNG into ``assets/carton/``. `train dope` with no --data renders
its first dataset from it. Its label (a front panel with a logo, a barcode on the back, two
differently coloured sides, a ringed lid) breaks every symmetry of its shape, so each corner
label can be learnt.

  python -m pose_train.dope.default_object     rewrite the files (the test checks they match)
"""
import os
import sys

import cv2
import numpy as np

SIZE = (0.08, 0.11, 0.05)      # x (width), y (height, DOPE's y points down), z (depth), metres
RADIUS = 0.008                 # of the rounded vertical edges
SEGMENTS = 4                   # per rounded edge
TEXTURE = 512
FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "carton")
MESH = os.path.join(FOLDER, "carton.obj")


def _outline():
    """The cross-section (x, z) counter-clockwise from the front face's right end, and each
    point's share of the way round (the label's u)."""
    w, d, r = SIZE[0] / 2, SIZE[2] / 2, RADIUS
    points = []
    for cx, cz, start in ((w - r, d - r, 0.0), (-w + r, d - r, 90.0), (-w + r, -d + r, 180.0),
                          (w - r, -d + r, 270.0)):
        for k in range(SEGMENTS + 1):
            a = np.radians(start + 90.0 * k / SEGMENTS)
            points.append((cx + r * np.cos(a), cz + r * np.sin(a)))
    points = np.asarray(points)
    # Start the label at the front-right corner so the front panel is one stretch of u.
    points = np.roll(points, -(SEGMENTS // 2), axis=0)
    closed = np.vstack([points, points[:1]])
    steps = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    u = np.concatenate([[0.0], np.cumsum(steps)]) / steps.sum()
    return closed, u


def _label(rng_seed=7):
    """The texture: the top three quarters wrap round the sides, the bottom quarter holds the
    lid (left half) and the base (right half). BGR, as cv2 writes it."""
    t = TEXTURE
    img = np.zeros((t, t, 3), np.uint8)
    band = int(t * 0.75)
    closed, u = _outline()
    w, d = SIZE[0], SIZE[2]
    perimeter = 2 * (w + d)
    # The wrap starts at the front-right corner and runs along the front (+z) first.
    front, left, back = (w / perimeter, (w + d) / perimeter, (2 * w + d) / perimeter)
    panels = [(0.0, front, (40, 140, 240)), (front, left, (60, 170, 60)),
              (left, back, (235, 235, 235)), (back, 1.0, (160, 50, 150))]
    for a, b, colour in panels:
        img[:band, int(a * t):int(b * t)] = colour
    x0, x1 = int(0.0 * t), int(front * t)
    cv2.circle(img, ((x0 + x1) // 2, band // 3), (x1 - x0) // 4, (255, 255, 255), -1)
    cv2.circle(img, ((x0 + x1) // 2, band // 3), (x1 - x0) // 7, (30, 60, 200), -1)
    cv2.putText(img, "POSE", (x0 + 12, int(band * 0.72)), cv2.FONT_HERSHEY_DUPLEX, 1.6,
                (255, 255, 255), 3, cv2.LINE_AA)
    cv2.rectangle(img, (x0, int(band * 0.85)), (x1, band), (20, 20, 120), -1)
    rng = np.random.default_rng(rng_seed)
    bx0, bx1 = int(left * t) + 10, int(back * t) - 10
    x = bx0
    while x < bx1:                                  # a barcode on the back
        width = int(rng.integers(1, 5))
        cv2.rectangle(img, (x, int(band * 0.55)), (min(x + width, bx1), int(band * 0.8)), (0, 0, 0), -1)
        x += width + int(rng.integers(1, 4))
    cv2.putText(img, "0.33 L", (int(front * t) + 6, band // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (255, 255, 255), 2, cv2.LINE_AA)
    lid, base = img[band:, :t // 2], img[band:, t // 2:]
    lid[:] = (200, 200, 200)
    cv2.circle(lid, (t // 4, (t - band) // 2), (t - band) // 3, (40, 140, 240), 10)
    cv2.circle(lid, (t // 4 + 30, (t - band) // 2 - 10), 9, (0, 0, 200), -1)   # the spout
    base[:] = (120, 120, 120)
    cv2.putText(base, "pose-train", (12, (t - band) // 2 + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                (255, 255, 255), 2, cv2.LINE_AA)
    return img


def _obj_lines():
    closed, u = _outline()
    top, bottom = -SIZE[1] / 2, SIZE[1] / 2          # y points down: the top is at -y
    lines = ["# pose-train's embedded object: a drinks carton (metres). Made by "
             "pose_train/dope/default_object.py.", "mtllib carton.mtl", "usemtl label"]
    n = len(closed)
    for y in (top, bottom):
        for x, z in closed:
            lines.append("v %.6f %.6f %.6f" % (x, y, z))
    for k in range(n):                              # the side wall's uv: v = 1 at the top
        lines.append("vt %.6f %.6f" % (u[k], 1.0))
    for k in range(n):
        lines.append("vt %.6f %.6f" % (u[k], 0.25))
    for y, cap_u in ((top, 0.25), (bottom, 0.75)):  # lid and base: centre, then the rim
        lines.append("v 0.000000 %.6f 0.000000" % y)
        for x, z in closed:
            lines.append("vt %.6f %.6f" % (cap_u + x / SIZE[0] * 0.45, 0.125 - z / SIZE[2] * 0.1))
        lines.append("vt %.6f 0.125" % cap_u)
    faces = []
    for k in range(n - 1):
        a, b, c, d = k + 1, k + 2, n + k + 2, n + k + 1
        faces.append("f %d/%d %d/%d %d/%d" % (a, a, b, b, c, c))
        faces.append("f %d/%d %d/%d %d/%d" % (a, a, c, c, d, d))
    for cap, ring in ((0, 0), (1, n)):
        centre_v = 2 * n + 1 + cap
        base_t = 2 * n + cap * (n + 1)
        centre_t = base_t + n + 1
        for k in range(n - 1):
            faces.append("f %d/%d %d/%d %d/%d" % (centre_v, centre_t, ring + k + 1, base_t + k + 1,
                                                  ring + k + 2, base_t + k + 2))
    return lines + faces


def write(folder=FOLDER):
    """Write carton.obj, carton.mtl and carton.png into ``folder``; returns the OBJ's path."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "carton.obj"), "w") as f:
        f.write("\n".join(_obj_lines()) + "\n")
    with open(os.path.join(folder, "carton.mtl"), "w") as f:
        f.write("newmtl label\nKa 1 1 1\nKd 1 1 1\nKs 0.2 0.2 0.2\nmap_Kd carton.png\n")
    cv2.imwrite(os.path.join(folder, "carton.png"), _label())
    return os.path.join(folder, "carton.obj")


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else FOLDER))
