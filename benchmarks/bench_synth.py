"""Frames per second of `synth dope --mesh` beside the cuboid generator, per CPU core.

  python benchmarks/bench_synth.py --frames 40 --size 640x480

The mesh: a 20,480-triangle sphere-ish textured object (OBJ + MTL + 512 px PNG, written here),
5 distractors in every frame, 1 instance, PNG + JSON written as the job writes them. One core:
one worker with Mesa's llvmpipe on one thread (LP_NUM_THREADS=1) and OpenCV on one thread.
Also printed: every core of this machine (one worker per core), and the cuboid generator
(`synth dope`, pure NumPy/OpenCV, one process). Per frame: the scene render, the silhouettes
drawn alone for visibility, the image work (compositing, jitter, noise) and the writes.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]
os.environ.setdefault("LP_NUM_THREADS", "1")   # before Mesa loads: one core per worker

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pose_train.dope import mesh_frames  # noqa: E402
from pose_train.dope.geometry import intrinsics_matrix  # noqa: E402
from pose_train.dope.synth import write_dataset  # noqa: E402


def textured_mesh(folder):
    """An icosphere of 20,480 triangles squashed into a product-like shape, UV-mapped onto a
    512 px texture, written as OBJ + MTL + PNG by trimesh."""
    import trimesh
    from PIL import Image
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    v = mesh.vertices
    uv = np.stack([np.arctan2(v[:, 1], v[:, 0]) / (2 * np.pi) + 0.5, v[:, 2] * 0.5 + 0.5], 1)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (512, 512, 3), np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 6)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture))
    mesh.apply_scale((0.04, 0.03, 0.08))
    path = os.path.join(folder, "product.obj")
    mesh.export(path)
    return path, len(mesh.faces)


def timed_frames(setup, out, frames):
    """(frames/s, {stage: ms per frame}) of one worker in this process."""
    maker = mesh_frames.FrameMaker(setup)
    spent = {"render": 0.0, "silhouettes": 0.0}

    def clock(name, fn):
        def wrapped(*a, **k):
            start = time.perf_counter()
            result = fn(*a, **k)
            spent[name] += time.perf_counter() - start
            return result
        return wrapped
    # silhouettes() calls render() once per instance: its time is counted in both.
    maker.renderer.render = clock("render", maker.renderer.render)
    maker.renderer.silhouettes = clock("silhouettes", maker.renderer.silhouettes)
    start = time.perf_counter()
    for i in range(frames):
        mesh_frames.write_frame(maker, out, i)
    wall = time.perf_counter() - start
    maker.renderer.release()
    ms = {"scene": spent["render"] - spent["silhouettes"], "silhouettes": spent["silhouettes"],
          "rest": wall - spent["render"]}
    return frames / wall, {k: 1000 * v / frames for k, v in ms.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cv2.setNumThreads(1)
    root = tempfile.mkdtemp(prefix="bench-synth-")
    mesh, triangles = textured_mesh(root)
    K = intrinsics_matrix(0.9 * width, 0.9 * width, width / 2, height / 2)
    setup = mesh_frames.Setup(mesh=mesh, scale=1.0, object_name="product", width=width,
                             height=height, K=K, seed=0, distance=(0.4, 0.9),
                             max_distractors=5, min_distractors=5)
    os.makedirs(os.path.join(root, "one"))
    one_core, stages = timed_frames(setup, os.path.join(root, "one"), args.frames)
    os.makedirs(os.path.join(root, "all"))
    cores = os.cpu_count() or 1
    start = time.perf_counter()
    mesh_frames.write_frames(setup, os.path.join(root, "all"), range(args.frames * cores),
                            workers=cores, progress=False)
    all_cores = args.frames * cores / (time.perf_counter() - start)
    start = time.perf_counter()
    write_dataset(os.path.join(root, "cuboid"), args.frames, width=width, height=height,
                  progress=False)
    cuboid = args.frames / (time.perf_counter() - start)
    gl = subprocess.run([sys.executable, "-c", "from pose_train.dope import render; "
                         "c = render.create_context(); print(c.info['GL_RENDERER'])"],
                        capture_output=True, text=True, cwd=os.path.dirname(HERE)).stdout.strip()
    print("machine: %s, %d cores, %s; renderer: %s" % (platform.machine(), cores,
                                                       platform.platform(), gl))
    print("%dx%d, %d frames, mesh %d triangles + 5 distractors, PNG + JSON written"
          % (width, height, args.frames, triangles))
    print("| generator | frames/s | scene render ms | silhouettes ms | the rest (background, jitter, PNG, JSON) ms |")
    print("|---|---:|---:|---:|---:|")
    print("| synth dope --mesh, 1 core | %.1f | %.1f | %.1f | %.1f |"
          % (one_core, stages["scene"], stages["silhouettes"], stages["rest"]))
    print("| synth dope --mesh, %d workers (all cores) | %.1f | | | |" % (cores, all_cores))
    print("| synth dope (cuboid), 1 process | %.1f | | | |" % cuboid)


if __name__ == "__main__":
    main()
