"""Smoke run of the DOPE benchmark scripts (their figures are recorded, not asserted)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))


@pytest.mark.slow
def test_dope_init_compares_both_inits():
    import dope_init
    rows = dope_init.main(["--steps", "2", "--size", "32", "--frames", "8", "--batch", "4"])
    assert [r["init"] for r in rows] == ["pytorch-default", "torchvision-vgg"]
    # The whole point of the change: the image still reaches the end of the trunk.
    assert rows[1]["trunk_std_over_images"] > 100 * rows[0]["trunk_std_over_images"]
