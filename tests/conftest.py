"""Shared fixtures: a real Docker engine and freshly built runtime images.

Docker tests never fake the engine. Without one they skip and say how to get one,
except under tests/run-all.sh (POSE_TRAIN_REQUIRE_DOCKER=1), where that is a failure.
"""
import os
import signal

import pytest


def _unavailable(reason):
    if os.environ.get("POSE_TRAIN_REQUIRE_DOCKER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    from pose_train.launcher import docker_engine as engine
    failed = [message for ok, message in engine.diagnose() if not ok]
    if failed:
        _unavailable("needs a Docker engine (%s); tests/run-all.sh starts one" % failed[0])
    return engine.connect()


def _build(name, base_env, variant=None, tag=None):
    from pose_train.launcher import docker_images as images
    base = os.environ.get(base_env)
    if not base:
        _unavailable("set %s to a local base image (tests/run-all.sh bootstraps one with debootstrap)" % base_env)
    if name == "modern" and variant is None:
        variant = os.environ.get("POSE_TRAIN_MODERN_VARIANT", "cpu")
    return images.build(name, base=base, variant=variant, tag=tag, quiet=True)


@pytest.fixture(scope="session")
def modern_image(docker_client):
    """The modern image built from this checkout (layer cache keeps rebuilds short)."""
    return _build("modern", "POSE_TRAIN_MODERN_BASE")


@pytest.fixture(scope="session")
def legacy_image(docker_client):
    return _build("legacy", "POSE_TRAIN_LEGACY_BASE")


@pytest.fixture(scope="session")
def cuda_image(docker_client):
    """The modern image's CUDA variant (what GPU users train in), on a base with the CUDA lock's
    Python 3.12; its dependency stage is cached by the lock, so only a changed lock rebuilds it."""
    from pose_train.launcher import docker_images as images
    return _build("modern", "POSE_TRAIN_CUDA_BASE", variant="cuda", tag=images.image_tag("modern") + "-cuda")


@pytest.fixture(scope="module")
def two_torch_threads():
    """Both cores of the CI box for one module's in-process training, restored after."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread():
    """One thread per process for a module: the test box is small and shared, spawned ranks
    inherit it, and a process computes as each of two ranks on this box does (a float
    comparison with DDP is then bit for bit)."""
    import torch
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS")
    else:
        os.environ["OMP_NUM_THREADS"] = env


def _terminal_defaults():
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.fixture
def terminal_signals():
    """SIGINT and SIGHUP as a terminal session has them, for tests that send one. A runner
    started in the background (`cmd &` in a script) hands SIGINT down ignored, `nohup` SIGHUP;
    pose-train keeps an inherited ignore on purpose, so such a test would see nothing happen.
    Yields the preexec_fn that gives a child process the same."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGHUP)}
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield _terminal_defaults
    for signum, handler in before.items():
        signal.signal(signum, handler)
