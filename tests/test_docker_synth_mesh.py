"""`synth dope --mesh` inside the modern image (CPU): Mesa's EGL and llvmpipe are in the image,
the mesh's MTL and texture are mounted beside it, and the frames match the host's."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import mesh_files
from infer_helpers import local_cli
from pose_train.launcher import docker_images as images

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_mesh_frames_render_in_the_modern_image_as_on_the_host(modern_image, tmp_path):
    box = mesh_files.textured_box(str(tmp_path / "mesh"), offset=(0.01, 0.0, -0.02))
    common = ["synth", "dope", "--mesh", box, "--n", "3", "--width", "96", "--height", "72",
              "--seed", "5", "--extras"]
    result = subprocess.run([sys.executable, "-m", "pose_train"] + common + ["--out", str(tmp_path / "image")],
                            capture_output=True, text=True, timeout=600, cwd=images.REPO)
    assert result.returncode == 0, result.stderr
    assert "llvmpipe" in result.stdout and "wrote 3 frames" in result.stdout, result.stdout
    assert local_cli(*common, "--out", tmp_path / "host", "--workers", 1) == 0
    for i in range(3):
        stem = "%06d" % i
        inside = json.load(open(tmp_path / "image" / (stem + ".json")))
        host = json.load(open(tmp_path / "host" / (stem + ".json")))
        assert inside["objects"][0]["visibility"] > 0
        np.testing.assert_allclose(inside["objects"][0]["projected_cuboid"],
                                   host["objects"][0]["projected_cuboid"], atol=1e-9)
        for suffix in (".png", ".seg.png"):
            a = cv2.imread(str(tmp_path / "image" / (stem + suffix)), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(str(tmp_path / "host" / (stem + suffix)), cv2.IMREAD_UNCHANGED)
            assert a.shape == b.shape
            # The same Mesa on both sides gives the same pixels; another llvmpipe may round
            # a few edge pixels differently.
            assert (a != b).any(axis=-1 if a.ndim == 3 else None).mean() < 0.01
    owned = [p for p in (tmp_path / "image").iterdir() if p.is_file()]
    assert owned and all(p.stat().st_uid == os.getuid() for p in owned)


def test_the_cuda_image_draws_through_egl_too(docker_client, cuda_image):
    """Without a GPU the CUDA image falls back to Mesa's llvmpipe; with one, the toolkit's
    "graphics" capability (set in the image) brings the driver's EGL."""
    out = docker_client.containers.run(
        cuda_image, ["-c", "from pose_train.dope import render; c = render.create_context(); "
                           "print(c.info['GL_RENDERER'], c.version_code)"],
        entrypoint=["python"], remove=True).decode()
    assert "llvmpipe" in out and int(out.split()[-1]) >= 330
    env = docker_client.images.get(cuda_image).attrs["Config"]["Env"]
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics" in env
