"""pose_train_py27.sidecar: the one schema of the json beside weights files."""
import json

import pytest

from pose_train_py27 import sidecar
from pose_train_py27.dope_io import InputError


def test_what_the_trainer_writes_reads_back_with_its_normalisation(tmp_path):
    weights = str(tmp_path / "net_epoch_01.pth")
    meta = sidecar.dope_meta("Cube", 128, "imagenet", 0.5, [10, 8, 6], [320, 240])
    sidecar.write(weights, meta)
    back = sidecar.read(weights)
    assert back["object"] == "cube" and back["sidecar_version"] == sidecar.VERSION
    norm = sidecar.normalization_of(back)
    assert norm["name"] == "imagenet" and norm["std"] == [0.229, 0.224, 0.225]
    assert sidecar.decode_of(back)["sigma"] == 0.96 and back["decode"]["downscale_height"] == 128


@pytest.mark.parametrize("stored, name, mean", [
    ("ros", "ros", [0.5] * 3),                                    # version 1, benchmarks
    ({"name": "imagenet"}, "imagenet", [0.485, 0.456, 0.406]),     # a dict without numbers
    ({"name": "ros", "mean": [0.5] * 3, "std": [0.5] * 3, "folded_from": "imagenet"}, "ros",
     [0.5] * 3),                                                   # what convert writes
    (None, "ros", [0.5] * 3),                                      # stock DOPE: the node's
])
def test_old_sidecars_still_load(tmp_path, stored, name, mean):
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"object": "cube"} if stored is None else
                               {"object": "cube", "normalization": stored}))
    meta = sidecar.read(str(tmp_path / "net.pth"))
    norm = sidecar.normalization_of(meta)
    assert norm["name"] == name and norm["mean"] == mean
    assert sidecar.normalization_of(meta, "imagenet")["name"] == "imagenet"   # a flag wins


def test_british_spelling_of_older_states_is_read(tmp_path):
    (tmp_path / "w.json").write_text(json.dumps({"normalisation": "imagenet"}))
    assert sidecar.read(str(tmp_path / "w.pth"))["normalization"]["name"] == "imagenet"


@pytest.mark.parametrize("text, says", [
    ('{"normalization": {"mean": [1, 2], "std": [1, 2]}}', "needs 3 mean and 3 positive std"),
    ('{"normalization": {"mean": [0, 0, 0], "std": [0, 0, 0]}}', "positive std"),
    ('{"dimensions_cm": [1, 2]}', "dimensions_cm must be the cuboid's 3 sizes"),
    ('{"dimensions_cm": "big"}', "dimensions_cm must be"),
    ('{"decode": {"sigma": "abc"}}', "decode.sigma must be a number >= 0"),
    ('{"decode": {"sigma": -1}}', "decode.sigma must be a number >= 0"),
    ('{"imagesize": "x"}', "imagesize must be a positive number"),
    ("[1, 2]", "a sidecar is a JSON object"),
    ("{not json", "is not valid JSON"),
])
def test_a_bad_sidecar_is_one_line_naming_the_file(tmp_path, text, says):
    (tmp_path / "net.json").write_text(text)
    with pytest.raises(InputError) as err:
        sidecar.read(str(tmp_path / "net.pth"))
    assert says in str(err.value) and str(tmp_path / "net.json") in str(err.value)


def test_an_unknown_name_is_refused_unless_a_flag_overrides_it(tmp_path):
    (tmp_path / "net.json").write_text('{"normalization": "zscore"}')
    meta = sidecar.read(str(tmp_path / "net.pth"))
    assert sidecar.normalization_of(meta, "ros")["name"] == "ros"
    with pytest.raises(InputError, match="unknown normalization 'zscore'; set it to one of"):
        sidecar.normalization_of(meta, source="net.json")


def test_no_sidecar_is_an_empty_dict(tmp_path):
    assert sidecar.read(str(tmp_path / "stock_dope.pth")) == {}
    assert sidecar.path_of("/a/b/best.pkl") == "/a/b/best.json"
