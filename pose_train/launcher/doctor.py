"""`pose-train doctor`: GPU, Docker and image state in one report, each problem with its fix."""
from pose_train.launcher import docker_engine as engine, docker_images as images, gpu, orphans


def doctor(stop_orphans=False):
    ok = True
    print("GPU (NVML)")
    report = gpu.probe()
    if report.problem:
        print("  - %s: jobs run on the CPU" % report.problem)
    else:
        print("  driver %s, CUDA driver %s" % (report.driver, report.cuda_driver))
        for g in report.gpus:
            print("  GPU %d: %s, %.1f GiB, compute capability %s" % (g.index, g.name, g.memory_gib, g.capability))
    print("Docker")
    steps = engine.diagnose()
    for passed, message in steps:
        print("  %s %s" % ("ok" if passed else "FAIL", message))
        ok = ok and passed
    if not ok:
        return 1
    client = engine.connect()
    has_runtime = engine.nvidia_runtime(client)
    print("  %s NVIDIA container runtime%s" % ("ok" if has_runtime else "--", "" if has_runtime else
          " not configured: GPUs cannot reach containers (install nvidia-container-toolkit)"))
    ok = _orphans(client, stop_orphans) and ok
    print("Images")
    for name in ("modern", "legacy"):
        tag = images.image_tag(name)
        labels = images.labels(client, tag)
        if labels is None:
            print("  FAIL %s missing: pose-train images build %s" % (tag, name))
            ok = False
            continue
        print("  ok %s: torch %s, CUDA %s" % (tag, labels.get("io.pose-train.torch.version"),
                                            labels.get("io.pose-train.cuda.version") or "none (CPU build)"))
        if not report.problem:
            for problem in gpu.image_problems(report, labels):
                print("     -> %s: this runtime uses the CPU" % problem)
    return 0 if ok else 1


def _orphans(client, stop):
    """The leftovers of killed launchers; True when there are none (or they were stopped)."""
    found = orphans.find(client)
    print("Containers")
    if not found:
        print("  ok no pose-train container left behind by a killed launcher")
        return True
    for c in found:
        print("  FAIL %s" % orphans.describe(c))
    if stop:
        for name in orphans.stop(found):
            print("  stopped and removed %s (a trainer saves its state on the way)" % name)
        return True
    print("     -> pose-train doctor --stop_orphans stops and removes them (SIGTERM first: "
          "trainers save), or docker rm -f NAME")
    return False


def main(args):
    """`pose-train doctor` (declared in pose_train.jobs.host)."""
    return doctor(getattr(args, "stop_orphans", False))
