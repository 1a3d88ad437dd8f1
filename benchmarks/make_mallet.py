"""Write a second object of our own making for the learning benchmark: a mallet (PLY with
vertex colours, metres), 12 x 5.5 x 3 cm. Not a box: a cylindrical handle into a head whose
two striking faces differ in colour (red and blue), so its pose is unambiguous.

  python benchmarks/make_mallet.py runs/mallet.ply
  python benchmarks/learn_dope.py --mesh runs/mallet.ply --outf runs/learn-mallet
"""
import sys

import numpy as np
import trimesh


def mallet():
    handle = trimesh.creation.cylinder(radius=0.008, height=0.09, sections=24)
    handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    handle.apply_translation([-0.015, 0.0, 0.0])
    handle.visual.vertex_colors = np.tile([200, 170, 90, 255], (len(handle.vertices), 1))
    head = trimesh.creation.box(extents=[0.03, 0.055, 0.03])
    head.apply_translation([0.045, 0.0, 0.0])
    head = head.subdivide().subdivide()          # colours per vertex need vertices per face
    colours = np.tile([90, 90, 90, 255], (len(head.vertices), 1))
    y = head.vertices[:, 1]
    colours[y > 0.0275 - 1e-6] = [220, 40, 40, 255]    # one striking face red
    colours[y < -0.0275 + 1e-6] = [40, 60, 220, 255]   # the other blue
    colours[(head.vertices[:, 2] > 0.015 - 1e-6) & (y > 0)] = [240, 220, 40, 255]  # a yellow top half
    head.visual.vertex_colors = colours
    return trimesh.util.concatenate([handle, head])


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "mallet.ply"
    mesh = mallet()
    mesh.export(out)
    print("wrote %s: %d vertices, extents %s m" % (out, len(mesh.vertices), np.round(mesh.extents, 4)))
