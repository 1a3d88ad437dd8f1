"""The embedded object (a carton of our own making) and the dataset `train dope` renders from
it when given no --data."""
import filecmp
import glob
import json
import os

import numpy as np

from pose_train.dope import default_object, embedded


def test_the_shipped_carton_is_what_its_maker_writes(tmp_path):
    default_object.write(str(tmp_path))
    for name in ("carton.obj", "carton.mtl", "carton.png"):
        assert filecmp.cmp(tmp_path / name, os.path.join(default_object.FOLDER, name),
                           shallow=False), name


def test_the_embedded_dataset_is_the_carton_rendered_once(tmp_path, monkeypatch):
    monkeypatch.setenv("POSE_TRAIN_CACHE", str(tmp_path / "cache"))
    path, made = embedded.cached_dataset(str(tmp_path / "out"), 3, seed=0, width=96, height=72,
                                         distance=(0.2, 0.3))
    assert made and path.startswith(str(tmp_path / "cache"))
    frames = sorted(glob.glob(os.path.join(path, "*.json")))
    assert len(frames) == 3
    obj = json.load(open(frames[0]))["objects"][0]
    assert obj["class"] == "cube"
    np.testing.assert_allclose(obj["cuboid_dimensions"], default_object.SIZE, atol=1e-6)
    stamp = os.path.getmtime(frames[0])
    again, made2 = embedded.cached_dataset(str(tmp_path / "out"), 3, seed=0, width=96,
                                           height=72, distance=(0.2, 0.3))
    assert again == path and not made2 and os.path.getmtime(frames[0]) == stamp
    other, made3 = embedded.cached_dataset(str(tmp_path / "out"), 4, seed=0, width=96,
                                           height=72, distance=(0.2, 0.3))
    assert other != path and made3
    monkeypatch.delenv("POSE_TRAIN_CACHE")
    local, _ = embedded.cached_dataset(str(tmp_path / "out"), 1, seed=0, width=64, height=48)
    assert local.startswith(str(tmp_path / "out" / ".cache"))
