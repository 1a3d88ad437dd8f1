"""Checks on an image build's base, made before any wheel is fetched: that the engine has it
(pulled when missing, or refused in one line), and that its Python is the lock's."""
import sys

from pose_train.errors import UserError

PYTHON = "import sys; print('%d.%d' % sys.version_info[:2])"


def ensure_base(client, base):
    """The base's repo digest (or local id), pulling it first when the engine lacks it."""
    import docker.errors
    import requests.exceptions
    try:
        image = client.images.get(base)
    except docker.errors.ImageNotFound:
        print("pulling the base image %s" % base, flush=True)
        try:
            from docker.utils import parse_repository_tag
            repository, tag = parse_repository_tag(base)
            image = client.images.pull(repository, tag=tag or "latest")
        except (docker.errors.APIError, requests.exceptions.RequestException) as err:
            reason = str(getattr(err, "explanation", None) or err).strip().splitlines()[0][:160]
            raise UserError("base image %s is not on this machine and cannot be pulled (%s); `docker pull %s` "
                            "where a registry is reachable, or pass --base with a local image"
                            % (base, reason, base))
    return (image.attrs.get("RepoDigests") or [image.id])[0].split("@")[-1]


def check_python(client, base, variant, lock):
    """Refuse a base whose python3 is not the lock's, naming the variant that fits it. A base
    without Python (the nvidia/cuda images) is fine: the Dockerfile installs its distribution's."""
    import docker.errors
    want = lock.TARGETS["modern-%s" % variant]["python"]
    try:
        have = client.containers.run(base, ["-c", PYTHON], entrypoint=["python3"], remove=True).decode().strip()
    except docker.errors.APIError:
        return   # no python3 there
    if have == want:
        return
    fits = [v for v in ("cuda", "cpu") if lock.TARGETS["modern-%s" % v]["python"] == have]
    raise UserError("base image %s has Python %s, and the %s variant's lock is for Python %s: %s"
                    % (base, have, variant, want, "build --variant %s on it" % fits[0] if fits else
                       "pass a --base with Python %s" % want))


def say_replaced_variant(client, tag, variant):
    """Both variants default to one tag: say so when a build replaces the other one there."""
    import docker.errors
    try:
        before = (client.images.get(tag).labels or {}).get("io.pose-train.variant")
    except docker.errors.ImageNotFound:
        return
    if before and before != variant:
        print("pose-train: note: %s held the %s variant; it now holds the %s variant (--tag keeps both, "
              "and POSE_TRAIN_MODERN_IMAGE=TAG makes the launcher run another)" % (tag, before, variant),
              file=sys.stderr)
