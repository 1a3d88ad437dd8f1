"""Run one job in its image: GPU check, mounts, container, live logs, manifest, exit code."""
import datetime
import os
import shlex
import signal
import sys
import threading
import uuid

from pose_train import __version__
from pose_train.errors import Interrupted, UserError, interrupt_exit_code
from pose_train.files import atomic_write_json
from pose_train.jobs import LEGACY, to_argv
from pose_train.launcher import gpu as gpu_mod
from pose_train.launcher import docker_images as images, orphans
from pose_train import pretrained
from pose_train.launcher.paths import BindMount, container_path, host_paths_in, output_folders, plan_mounts
from pose_train.environment import RUN_ID, STOP_WAIT as STOP_WAIT_ENV

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# How long the first Ctrl-C / SIGTERM waits for the job to save and exit: a DOPE state save is
# a few seconds on a local disk, a minute on a slow network one; --stop-wait S overrides it.
STOP_WAIT_S = 600.0
SHM_SIZE = "8g"  # DataLoader workers pass batches through /dev/shm; Docker's 64 MB default fails


def container_argv(job, args):
    """The CLI words + flags the image's entrypoint receives."""
    return list(job.container_words) + to_argv(args)


def decide_gpu(job, args, labels, report=None):
    """(use_gpu, warnings). Refuses (UserError) only when GPUs were asked for explicitly."""
    requested = args.get("gpus")
    if requested == 0 or (requested is None and not job.uses_gpu):
        return False, []
    report = report or gpu_mod.probe()
    problems = [report.problem] if report.problem else []
    if not problems and labels is not None:
        problems = gpu_mod.image_problems(report, labels)
    if not problems and not _nvidia_runtime():
        problems = ["Docker has no NVIDIA runtime: install nvidia-container-toolkit "
                    "(nvidia-ctk runtime configure --runtime=docker) and restart Docker"]
    if problems and requested:
        raise UserError("--gpus %s asked for, but %s" % (requested, problems[0]))
    if problems:
        return False, ["%s; running on the CPU (slow)" % p for p in problems]
    return True, []


def _nvidia_runtime():
    from pose_train.launcher.docker_engine import connect, nvidia_runtime
    return nvidia_runtime(connect())


def _torch_cache(job):
    """(mount, environment) that show a job with --pretrained torch's hub cache of this host."""
    if not any(f.name == "pretrained" for f in job.fields):
        return [], {}
    home = pretrained.torch_home()
    if not os.path.isdir(os.path.join(home, "hub", "checkpoints")):
        return [], {}
    target = container_path(home)
    return [BindMount(os.path.abspath(home), target, True)], {"TORCH_HOME": target}


def container_spec(job, args, use_gpu, run_id, create=True):
    new_args, mounts = plan_mounts(job, args, create=create)
    cache_mounts, cache_env = _torch_cache(job)
    mounts = mounts + cache_mounts
    gpus = args.get("gpus")
    if job.image == LEGACY:  # the py2.7 verifier takes a device, not a GPU count
        new_args.pop("gpus", None)
        if use_gpu:
            new_args["device"] = "cuda"
    return dict(
        # Several nodes: the rendezvous port and the processes' own ports must be reachable
        # from the other machines, as on the host itself.
        network="host" if args.get("rdzv") else None,
        image=images.image_tag(job.image), command=container_argv(job, new_args), mounts=mounts,
        user="%d:%d" % (os.getuid(), os.getgid()), shm_size=SHM_SIZE, init=True,
        gpu_count=(gpus or -1) if use_gpu else 0, name="pose-train-%s-%s" % (job.name, run_id),
        environment=dict(cache_env, PYTHONUNBUFFERED="1", **{RUN_ID: run_id}),
        labels=dict(orphans.launcher_labels(), **{
            "io.pose-train.job": job.name, orphans.RUN_LABEL: run_id,
            "io.pose-train.launcher-version": __version__}))


def docker_run_command(spec):
    """The equivalent `docker run` line (for --dry-run and the manifest)."""
    cmd = ["docker", "run", "--rm", "--init", "--user", spec["user"], "--shm-size", spec["shm_size"],
           "--name", spec["name"]]
    if spec["gpu_count"]:
        cmd += ["--gpus", "all" if spec["gpu_count"] < 0 else str(spec["gpu_count"])]
    if spec["network"]:
        cmd += ["--network", spec["network"]]
    for m in spec["mounts"]:
        cmd += ["-v", "%s:%s:%s" % (m.source, m.target, "ro" if m.read_only else "rw")]
    for key, value in sorted(spec["environment"].items()):
        cmd += ["-e", "%s=%s" % (key, value)]
    for key, value in sorted(spec["labels"].items()):
        cmd += ["--label", "%s=%s" % (key, value)]
    return shlex.join(cmd + [spec["image"]] + spec["command"])


def launch(job, args, dry_run=False):
    run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    plan_mounts(job, args, create=False)  # bad paths are reported before the engine is asked anything
    client, labels = None, None
    if not dry_run:
        from pose_train.launcher.docker_engine import connect
        client = connect()
        _warn_orphans(client)
        labels = images.labels(client, images.image_tag(job.image))
        if labels is None:
            raise UserError("image %s not found: build it with `pose-train images build %s`"
                            % (images.image_tag(job.image), job.image))
    report = gpu_mod.probe()
    use_gpu, warnings = decide_gpu(job, args, labels, report)
    for warning in warnings:
        print("pose-train: warning: %s" % warning, file=sys.stderr)
    made = [] if dry_run else _folders_to_make(job, args)
    spec = container_spec(job, args, use_gpu, run_id, create=not dry_run)
    if dry_run:
        print(docker_run_command(spec))
        return 0
    log_dir = _log_dir(job, args)
    code = None
    try:
        code = _run_container(client, spec, log_dir, run_id, labels, report)
        return code
    finally:
        if code != 0:
            _remove_if_only_this_log(made, run_id)


def _folders_to_make(job, args):
    """The output folders this launch creates for the container to write into."""
    return [folder for _, folder in output_folders(job, args) if not os.path.exists(folder)]


# The job's claim on its folder (pose_train_py27.dope_io.OutputClaim.LOCK; that module loads cv2).
CLAIM_LOCK = ".pose-train.lock"


def _remove_if_only_this_log(folders, run_id):
    """A failed or stopped job leaves no folder behind that this launch made and into which
    nothing but the launcher's log of it (and the job's claim) went: its lines were on the
    terminal, as a --local job removes a folder it made and wrote nothing into."""
    ours = {run_id + ".log", run_id + ".json"}
    for folder in folders:
        logs = os.path.join(folder, "logs")
        try:
            if set(os.listdir(folder)) - {CLAIM_LOCK} != {"logs"} or not set(os.listdir(logs)) <= ours:
                continue
            if os.path.exists(os.path.join(folder, CLAIM_LOCK)):
                os.remove(os.path.join(folder, CLAIM_LOCK))
            for name in os.listdir(logs):
                os.remove(os.path.join(logs, name))
            os.rmdir(logs)
            os.rmdir(folder)
        except OSError:
            pass   # not ours to tidy after all (another process wrote there, or it is gone)


def _warn_orphans(client):
    for c in orphans.find(client):
        print("pose-train: warning: %s; `pose-train doctor --stop_orphans` stops it"
              % orphans.describe(c), file=sys.stderr)


def _log_dir(job, args):
    if job.logs_to and args.get(job.logs_to):
        return os.path.join(os.path.abspath(args[job.logs_to]), "logs")
    if job.out_files and args.get(job.out_files[0]):
        return os.path.join(os.path.dirname(os.path.abspath(args[job.out_files[0]])), "logs")
    return None


def _create(client, spec):
    import docker.types
    mounts = [docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec["mounts"]]
    requests = []
    if spec["gpu_count"]:
        requests = [docker.types.DeviceRequest(count=spec["gpu_count"], capabilities=[["gpu"]])]
    return client.containers.create(
        spec["image"], spec["command"], name=spec["name"], user=spec["user"], shm_size=spec["shm_size"],
        init=True, mounts=mounts, device_requests=requests, environment=spec["environment"],
        labels=spec["labels"], network_mode=spec["network"], detach=True)


def _run_container(client, spec, log_dir, run_id, labels, report):
    container = _create(client, spec)
    manifest = _manifest(client, spec, run_id, labels, report)
    # A closed terminal (SIGHUP) stops the job as a scheduler's SIGTERM does: never an orphan.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in STOP_SIGNALS}
    log, code, streamer = None, None, None
    try:
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            log = open(os.path.join(log_dir, run_id + ".log"), "wb")
        container.start()
        # The logs stream from a thread so that the main thread, waiting for the exit, is free
        # to handle Ctrl-C while the job's last lines ("state saved ... continue with:") still
        # reach the terminal and the log.
        streamer = threading.Thread(target=_stream, args=(container, log), daemon=True)
        streamer.start()
        try:
            code = container.wait()["StatusCode"]
        except KeyboardInterrupt as err:
            code = _stop_gracefully(container, spec["name"], err,
                                    saves=spec["labels"]["io.pose-train.job"].startswith("train-"))
        streamer.join(timeout=10)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_and_remove(container)
        if streamer is not None:
            streamer.join(timeout=5)
        if log:
            log.close()
        if log_dir:
            manifest["exit_code"] = code
            manifest["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
            atomic_write_json(os.path.join(log_dir, run_id + ".json"), manifest, indent=2)
    return code


def _stream(container, log):
    """The job's output on this terminal and in the log, whole lines at a time so that its
    container paths read as the host paths the user typed."""
    pending = b""
    try:
        for chunk in container.logs(stream=True, follow=True):
            pending += chunk
            cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1   # progress bars end in \r
            if cut or len(pending) > 1 << 16:
                cut = cut or len(pending)
                _emit(host_paths_in(pending[:cut]), log)
                pending = pending[cut:]
    except (OSError, ValueError):
        pass   # the log was closed or the engine went away: the exit code still tells
    if pending:
        _emit(host_paths_in(pending), log)


def _emit(data, log):
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        if log and not log.closed:
            log.write(data)
    except (OSError, ValueError):
        pass


def stop_wait():
    try:
        return float(os.environ.get(STOP_WAIT_ENV, STOP_WAIT_S))
    except ValueError:
        raise UserError("%s must be a number of seconds, got %r"
                        % (STOP_WAIT_ENV, os.environ[STOP_WAIT_ENV]))


def _stop_gracefully(container, name, err, saves=True):
    """First Ctrl-C / SIGTERM / SIGHUP: SIGTERM to the job (its trainer saves at the next step
    and exits 0) and wait for it; a second one, or the wait running out, kills it."""
    import docker.errors
    import requests.exceptions
    wait = stop_wait()
    signame = signal.Signals(getattr(err, "signum", 2)).name
    if saves:
        print("\npose-train: %s: asking %s to save and stop at its next step; waiting up to %.0f s "
              "(press Ctrl-C again to stop it now, losing what it has not saved)"
              % (signame, name, wait), file=sys.stderr, flush=True)
    else:   # it keeps no state: promise nothing
        print("\npose-train: %s: stopping %s; the files it finished stay, the rest is not done"
              % (signame, name), file=sys.stderr, flush=True)
    try:
        container.kill(signal="SIGTERM")   # docker-init (--init) passes it on to the job
    except docker.errors.APIError:
        pass   # it has exited already: the wait below returns at once
    try:
        code = container.wait(timeout=wait)["StatusCode"]
        # A job ended by that SIGTERM exits 143; the user's interrupt is what the code reports.
        return interrupt_exit_code(err) if code == 128 + signal.SIGTERM else code
    except KeyboardInterrupt:
        why = "stopped at once as asked"
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        why = "it did not stop within %.0f s (--stop-wait S waits longer)" % wait
    print("pose-train: killing %s: %s; what it did since its last saved checkpoint is lost"
          % (name, why), file=sys.stderr, flush=True)
    try:
        container.kill()
    except docker.errors.APIError:
        pass
    return interrupt_exit_code(err)


def _raise_interrupt(signum, frame):
    raise Interrupted(signum)


def _stop_and_remove(container):
    import docker.errors
    try:
        container.reload()
        if container.status == "running":
            container.stop(timeout=10)  # SIGTERM, then SIGKILL after 10 s
        container.remove(force=True)
    except docker.errors.NotFound:
        pass  # already gone: nothing left to clean up


def _manifest(client, spec, run_id, labels, report):
    image = client.images.get(spec["image"])
    return {
        "run_id": run_id, "pose_train_version": __version__,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "image": {"tag": spec["image"], "id": image.id, "digests": image.attrs.get("RepoDigests", []),
                  "labels": labels},
        "gpu": report.as_dict(), "gpu_used": bool(spec["gpu_count"]),
        "host_command": shlex.join(sys.argv), "docker_command": docker_run_command(spec),
    }
