"""Containers a killed launcher left running: found by their labels, stopped on request.

Every container the launcher starts carries its run id, the launcher's PID and host. One whose
launcher process is gone (SIGKILL, a crashed shell) trains on unsupervised and is never
removed; `pose-train doctor` lists them and `--stop_orphans` stops and removes them. Compose's
containers carry no launcher PID: Compose owns those.
"""
import os
import socket

RUN_LABEL, PID_LABEL, HOST_LABEL = "io.pose-train.run-id", "io.pose-train.launcher-pid", \
    "io.pose-train.launcher-host"


def launcher_labels():
    return {PID_LABEL: str(os.getpid()), HOST_LABEL: socket.gethostname()}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # someone else's process: alive
    return True


def find(client):
    """Running containers of ours whose launcher, on this host, no longer exists."""
    host = socket.gethostname()
    found = []
    for c in client.containers.list(filters={"label": RUN_LABEL}):
        labels = c.labels or {}
        pid = labels.get(PID_LABEL, "")
        if labels.get(HOST_LABEL) == host and pid.isdigit() and not _alive(int(pid)):
            found.append(c)
    return found


def describe(c):
    labels = c.labels or {}
    return "%s (job %s, run %s, started %s; its launcher, PID %s, is gone)" % (
        c.name, labels.get("io.pose-train.job", "?"), labels.get(RUN_LABEL, "?"),
        c.attrs.get("State", {}).get("StartedAt", "?")[:19], labels.get(PID_LABEL, "?"))


def stop(containers, timeout=30):
    """SIGTERM (a trainer saves), then removal; returns the names."""
    names = []
    for c in containers:
        c.stop(timeout=timeout)
        c.remove(force=True)
        names.append(c.name)
    return names
