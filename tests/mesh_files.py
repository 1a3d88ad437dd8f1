"""Mesh files as other tools write them, made by hand in the tests: Wavefront OBJ + MTL + a
texture (the OBJ/MTL specifications: `v`, `vt` with v measured from the image's bottom, `f
v/vt`, `mtllib`, `usemtl`, `map_Kd`), and BOP's models_info.json symmetry entries."""
import json
import os

import cv2
import numpy as np

# Six tile colours (BGR as cv2 writes them), one per face of the box: a texture that breaks
# the box's symmetry.
TILE_COLOURS = [(40, 40, 220), (40, 200, 40), (220, 60, 40), (30, 220, 230), (220, 40, 220),
                (230, 230, 40)]
# Each face as 4 corner signs (x, y, z), counter-clockwise seen from outside.
_FACES = [
    [(1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1)],      # +x
    [(-1, -1, 1), (-1, 1, 1), (-1, 1, -1), (-1, -1, -1)],  # -x
    [(-1, 1, -1), (-1, 1, 1), (1, 1, 1), (1, 1, -1)],      # +y
    [(-1, -1, 1), (-1, -1, -1), (1, -1, -1), (1, -1, 1)],  # -y
    [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)],      # +z
    [(1, -1, -1), (-1, -1, -1), (-1, 1, -1), (1, 1, -1)],  # -z
]


def textured_box(folder, size=(0.1, 0.08, 0.06), offset=(0.0, 0.0, 0.0), name="box",
                 units=1.0):
    """Write NAME.obj + NAME.mtl + NAME.png: a box of ``size`` metres whose centre sits at
    ``offset`` in its own frame, each face its own tile of a 3 x 2 atlas, in ``units`` per
    metre (1000: mm). Returns the OBJ's path."""
    os.makedirs(folder, exist_ok=True)
    tile = 32
    atlas = np.zeros((2 * tile, 3 * tile, 3), np.uint8)
    for k, colour in enumerate(TILE_COLOURS):
        r, c = divmod(k, 3)
        atlas[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = colour
        cv2.circle(atlas, (c * tile + 8, r * tile + 8), 5, (255, 255, 255), -1)  # an asymmetric mark
    cv2.imwrite(os.path.join(folder, name + ".png"), atlas)
    half = np.asarray(size) / 2.0
    lines = ["mtllib %s.mtl" % name, "usemtl skin"]
    for face in _FACES:
        for signs in face:
            v = (np.asarray(signs) * half + np.asarray(offset)) * units
            lines.append("v %.9f %.9f %.9f" % tuple(v))
    for k in range(6):
        r, c = divmod(k, 3)
        u0, u1 = (c + 0.1) / 3.0, (c + 0.9) / 3.0
        v_top, v_bottom = 1 - (r + 0.1) / 2.0, 1 - (r + 0.9) / 2.0   # vt's v runs bottom to top
        for u, v in ((u0, v_bottom), (u1, v_bottom), (u1, v_top), (u0, v_top)):
            lines.append("vt %.6f %.6f" % (u, v))
    for k in range(6):
        a, b, c, d = (4 * k + i + 1 for i in range(4))
        lines.append("f %d/%d %d/%d %d/%d" % (a, a, b, b, c, c))
        lines.append("f %d/%d %d/%d %d/%d" % (a, a, c, c, d, d))
    with open(os.path.join(folder, name + ".obj"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(folder, name + ".mtl"), "w") as f:
        f.write("newmtl skin\nKa 1 1 1\nKd 1 1 1\nmap_Kd %s.png\n" % name)
    return os.path.join(folder, name + ".obj")


def models_info(path, entries):
    """BOP's models/models_info.json: {id: {diameter, min_*, size_*, symmetries_*}} in mm."""
    with open(path, "w") as f:
        json.dump({str(k): v for k, v in entries.items()}, f)
    return path


def rotation_z_180_mm():
    """A BOP symmetries_discrete entry: half a turn about z, 16 row-major numbers."""
    return [-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
