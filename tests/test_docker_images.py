"""The images as built: reproducible content, truthful labels, no dead layers, and the CUDA
variant (built on a Python 3.12 base, smoke-tested on the CPU). Real engine, real builds."""
import os
import re
import subprocess
import sys

import pytest

from pose_train.launcher import docker_images as images

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPO = images.REPO
GB = 1e9


def _lock():
    return images.lock_module()


def _dockerfile_labels(stage):
    """The LABEL values a Dockerfile stage declares (what a compose build carries)."""
    text = open(os.path.join(REPO, "docker/modern/Dockerfile")).read().replace("\\\n", " ")
    block = text.split("AS %s" % stage, 1)[1].split("\nFROM ", 1)[0]
    return dict(re.findall(r'(\S+)="([^"]*)"', block))


def _python(image, code, python="python"):
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", python, image, "-c", code],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_locks_re_render_and_wheelhouses_hold_exactly_the_locked_files(modern_image):
    """Each filled wheelhouse holds, per locked requirement, a file with a locked hash that the
    target's Python and platforms can install; the pip-made locks re-render byte for byte."""
    lock = _lock()
    for target in sorted(lock.TARGETS):
        wheelhouse = images.wheelhouse_dir(target)
        if not os.path.isdir(wheelhouse):
            continue
        assert lock.missing(wheelhouse, target) == [], target
        assert all(lock.fits(name, target) for name in os.listdir(wheelhouse)), target
        if not lock.TARGETS[target].get("uv"):
            with open(lock.lock_path(target)) as f:
                assert lock.render_lock(wheelhouse, target) == f.read(), target


def test_a_build_without_cache_gives_the_same_content_manifest(docker_client, modern_image):
    """Two builds from one commit and lock: the same sha256 for every file under /opt/venv and
    /opt/pose-train (the manifest label), and the same labels. The image ids differ: this engine's
    classic builder stamps each layer and the config with the build's wall clock."""
    before = docker_client.images.get(modern_image)
    tag = images.build("modern", base=os.environ["POSE_TRAIN_MODERN_BASE"], variant="cpu",
                       tag="pose-train/modern:rebuild-check", no_cache=True, quiet=True)
    try:
        after = docker_client.images.get(tag)
        assert after.labels == before.labels
        assert len(after.labels["io.pose-train.manifest.sha256"]) == 64
        first = _python(modern_image, "print(open('/opt/pose-train/MANIFEST.sha256').read())")
        second = _python(tag, "print(open('/opt/pose-train/MANIFEST.sha256').read())")
        assert first == second
        assert len(first.splitlines()) > 5000 and "/opt/venv/lib/python3.11/site-packages/torch/" in first
    finally:
        docker_client.images.remove(tag)


def _shipped_paths(image, python):
    return _python(image, "import os; print('\\n'.join(p for r in ('/tmp', '/usr/local/share/ca-certificates') "
                          "for p, _, fs in os.walk(r) for f in fs))", python)


# CPU: 1.84 GB measured at stop 28; Mesa's EGL and llvmpipe (synth dope --mesh) added ~215 MB
# to the base. CUDA: 5.78 GB. Legacy: 2.57 GB with its wheelhouse as a dead layer (765 MB).
# Each image's installed packages: the modern venv, and what pip put under the legacy /usr/local.
@pytest.mark.parametrize("fixture,base_env,limit_gb,python,installed", [
    ("modern_image", "POSE_TRAIN_MODERN_BASE", 2.0, "python", "/opt/venv"),
    ("cuda_image", "POSE_TRAIN_CUDA_BASE", 6.0, "python", "/opt/venv"),
    ("legacy_image", "POSE_TRAIN_LEGACY_BASE", 2.0, "python2.7", "/usr/local")])
def test_images_ship_no_wheelhouse_and_fit_their_size(request, docker_client, fixture, base_env, limit_gb,
                                                      python, installed):
    """Base + installed packages + sources and nothing else: no wheelhouse layer deleted later,
    no host file (extra CA certificates stay in the build stage)."""
    image = docker_client.images.get(request.getfixturevalue(fixture))
    assert image.attrs["Size"] <= limit_gb * GB, image.attrs["Size"] / GB
    assert _shipped_paths(image.id, python) == ""
    packages = int(_python(image.id, "import os; print(sum(os.lstat(os.path.join(d, f)).st_size "
                                     "for d, _, fs in os.walk(%r) for f in fs))" % installed, python))
    base = docker_client.images.get(os.environ[base_env]).attrs["Size"]
    assert image.attrs["Size"] - base - packages < 64e6, (image.attrs["Size"], base, packages)
    # The legacy build stage (base + wheelhouse + packages) is not left behind untagged.
    assert docker_client.images.list(filters={"dangling": True, "label": "io.pose-train.stage=install"}) == []


@pytest.mark.parametrize("fixture,stage", [("modern_image", "variant-cpu"), ("cuda_image", "variant-cuda")])
def test_labels_are_what_the_built_torch_reports(request, docker_client, fixture, stage):
    """The stamped labels come from torch inside the image; the Dockerfile's (compose builds) agree."""
    tag = request.getfixturevalue(fixture)
    labels = docker_client.images.get(tag).labels
    probed = _python(tag, "import torch; f = getattr(torch._C, '_cuda_getArchFlags', lambda: '')() "
                          "if torch.version.cuda else ''; print(torch.__version__, torch.version.cuda, f)")
    version, cuda, *flags = probed.split()
    assert labels["io.pose-train.torch.version"] == version
    assert labels["io.pose-train.cuda.version"] == ("" if cuda == "None" else cuda)
    archs = sorted({"%d.%d" % divmod(int(f[3:]), 10) for f in flags if f.startswith("sm_")}, key=float)
    assert labels["io.pose-train.cuda.archs"] == " ".join(archs)
    declared = _dockerfile_labels(stage)
    for key in ("io.pose-train.torch.version", "io.pose-train.cuda.version", "io.pose-train.cuda.archs"):
        assert declared[key] == labels[key], key


def test_cuda_image_smoke_on_the_cpu(cuda_image, tmp_path):
    """The CUDA variant on a machine without a GPU: --help, the locked versions, and a one-step
    train then an infer through the launcher, on the trainer's real output."""
    help_text = subprocess.run(["docker", "run", "--rm", cuda_image, "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "train" in help_text.stdout
    lock = open(_lock().lock_path("modern-cuda")).read()
    pins = dict(re.findall(r"^(torch|numpy|onnxruntime)==(\S+)", lock, re.M))
    got = _python(cuda_image, "import sys, torch, numpy, onnxruntime; print(sys.version_info[:2], "
                              "torch.__version__.split('+')[0], "
                              "numpy.__version__, onnxruntime.__version__, torch.cuda.is_available())")
    assert got == "(3, 12) %s %s %s False" % (pins["torch"], pins["numpy"], pins["onnxruntime"])

    def launch(*args):
        result = subprocess.run([sys.executable, "-m", "pose_train"] + list(args), capture_output=True, text=True,
                                timeout=900, env=dict(os.environ, POSE_TRAIN_MODERN_IMAGE=cuda_image), cwd=REPO)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result
    data, run = tmp_path / "data", tmp_path / "run"
    launch("synth", "dope", "--out", str(data), "--n", "4", "--width", "96", "--height", "64")
    trained = launch("train", "dope", "--data", str(data), "--object", "cube", "--outf", str(run), "--epochs", "1",
                     "--imagesize", "64", "--batchsize", "4", "--workers", "0", "--pretrained", "none", "--val", "off")
    assert "on the CPU" in trained.stderr and (run / "net_epoch_01.pth").exists()
    launch("infer", "dope", str(run / "net_epoch_01.pth"), "--images", str(data), "--outf", str(tmp_path / "infer"))
    assert list((tmp_path / "infer").rglob("*.json"))


@pytest.mark.parametrize("variant,base_env,says", [
    ("cuda", "POSE_TRAIN_MODERN_BASE", "has Python 3.11, and the cuda variant's lock is for Python 3.12: "
                                       "build --variant cpu on it"),
    ("cpu", None, "is not on this machine and cannot be pulled")])
def test_a_wrong_base_is_refused_before_any_wheel_is_fetched(docker_client, tmp_path, variant, base_env, says):
    base = os.environ[base_env] if base_env else "pose-train-base/absent:local"
    result = subprocess.run([sys.executable, "-m", "pose_train", "images", "build", "modern", "--variant", variant,
                             "--base", base, "--wheelhouse", str(tmp_path / "wheels"), "--tag",
                             "pose-train/modern:refused-check"], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert says in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "wheels").exists()
