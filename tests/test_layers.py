"""Imports run one way: the layers declared in pose_train/layers.py, checked on every import."""
import ast
import glob
import os

import pytest

from pose_train.layers import LAYERS, layer_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules():
    for package in ("pose_train", "pose_train_py27"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted, path


def _imports(path):
    """(line, dotted name) of every import in the file, those inside functions included."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:   # `from pose_train import launcher` names a package
                yield node.lineno, "%s.%s" % (node.module, alias.name)


MODULES = list(_modules())


@pytest.mark.parametrize("module, path", MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_a_higher_layer(module, path):
    mine = layer_of(module)
    assert mine is not None, "%s is in no layer of pose_train/layers.py; add it there" % module
    upward = ["line %d: %s (layer %d: %s)" % (line, name, layer_of(name), LAYERS[layer_of(name)][0])
              for line, name in _imports(path)
              if layer_of(name) is not None and layer_of(name) > mine]
    assert not upward, "%s (layer %d) imports upward: %s" % (module, mine, "; ".join(upward))


def test_the_check_sees_an_upward_import(tmp_path):
    """The test itself can fail: a trainer importing the launcher is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from pose_train.launcher import run\n")
    assert [name for _, name in _imports(str(bad))] == ["pose_train.launcher.run"]
    assert layer_of("pose_train.launcher.run") > layer_of("pose_train.dope.train")
    assert layer_of("pose_train.environment") < layer_of("pose_train.jobs.spec")


def test_every_environment_variable_is_in_the_one_table_and_in_help():
    """Ten POSE_TRAIN_* variables were read in eleven modules and shown nowhere."""
    import re
    import subprocess
    import sys
    from pose_train import environment
    listed = {v.name for v in environment.VARIABLES + environment.COMPOSE_VARIABLES}
    used = set()
    for _, path in MODULES:
        used |= set(re.findall(r"POSE_TRAIN_[A-Z_]+[A-Z]", open(path).read()))
    for name in ("compose.yaml", os.path.join("docker", "entrypoint.sh")):
        used |= set(re.findall(r"POSE_TRAIN_[A-Z_]+[A-Z]", open(os.path.join(ROOT, name)).read()))
    assert used - listed == set()
    shown = subprocess.run([sys.executable, "-m", "pose_train", "--help"], capture_output=True,
                           text=True, cwd=ROOT).stdout
    docs = "".join(open(path).read() for path in [os.path.join(ROOT, "README.md")] +
                   glob.glob(os.path.join(ROOT, "docs", "*.md")))
    assert all(name in shown and name in docs for name in listed)
