"""The one prefix helper (pose_train_py27.keys), used by both runtimes."""
from pose_train_py27 import keys


def test_prefix_helpers():
    sd = {"a.weight": 1, "module.b": 2}
    assert keys.add_prefix(sd) == {"module.a.weight": 1, "module.b": 2}
    assert keys.strip_prefix(keys.add_prefix(sd)) == {"a.weight": 1, "b": 2}
    assert list(keys.strip_prefix({"module.z": 1, "a": 2})) == ["z", "a"]   # order kept
