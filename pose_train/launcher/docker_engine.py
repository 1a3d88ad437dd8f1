"""Connect to the Docker engine, and when that fails say which step failed and the fix.

Steps, in the order a person would check them: the docker SDK is installed, the
engine address (DOCKER_HOST or the default socket) exists, we may open it, the
daemon answers.
"""
import importlib.util
import os
import stat

from pose_train import environment
from pose_train.errors import UserError

DEFAULT_SOCKET = "/var/run/docker.sock"


def engine_address():
    return os.environ.get("DOCKER_HOST") or "unix://" + DEFAULT_SOCKET


def diagnose():
    """Return (ok, message) for each step; stops at the first failure."""
    steps = []
    if importlib.util.find_spec("docker") is None:
        return [(False, "docker SDK missing: pip install 'docker>=7.1'")]
    steps.append((True, "docker SDK installed"))
    address = engine_address()
    if address.startswith("unix://"):
        path = address[len("unix://"):]
        if not os.path.exists(path):
            steps.append((False, "no Docker socket at %s: install Docker Engine and start it "
                                 "(sudo systemctl start docker), or set DOCKER_HOST" % path))
            return steps
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            steps.append((False, "%s is not a socket: fix DOCKER_HOST" % path))
            return steps
        if not os.access(path, os.R_OK | os.W_OK):
            steps.append((False, "no permission on %s: sudo usermod -aG docker $USER, then log in again"
                                 % path))
            return steps
    steps.append((True, "engine address %s" % address))
    try:
        version = _client().version()
    except Exception as err:  # the SDK raises several unrelated types for "not reachable"
        steps.append((False, "Docker daemon at %s does not answer (%s): start it "
                             "(sudo systemctl start docker)" % (address, _short(err))))
        return steps
    steps.append((True, "Docker engine %s (API %s)" % (version.get("Version"), version.get("ApiVersion"))))
    return steps


def _short(err):
    return str(err).splitlines()[0][:160]


def _client():
    import docker
    return docker.from_env(timeout=int(os.environ.get(environment.DOCKER_TIMEOUT, "600")))


def connect():
    """A docker client that answers, or UserError naming the failed step and its fix."""
    for ok, message in diagnose():
        if not ok:
            raise UserError(message)
    return _client()


def nvidia_runtime(client):
    """Whether the engine can hand GPUs to containers (NVIDIA runtime or CDI devices)."""
    info = client.info()
    runtimes = info.get("Runtimes") or {}
    return "nvidia" in runtimes or bool(info.get("CDISpecDirs") and os.path.isdir("/etc/cdi"))
