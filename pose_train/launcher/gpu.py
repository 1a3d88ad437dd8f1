"""What the host GPUs are (NVML) and whether an image's torch build can use them.

Never raises for a missing driver or library: no NVML means "no GPU", said clearly.
"""
from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class Gpu:
    index: int
    name: str
    memory_gib: float
    capability: str  # "9.0"


@dataclass
class GpuReport:
    driver: Optional[str] = None
    cuda_driver: Optional[str] = None  # highest CUDA version the driver supports, "13.0"
    gpus: List[Gpu] = field(default_factory=list)
    problem: Optional[str] = None      # why there is no GPU, in words

    def as_dict(self):
        return {"driver": self.driver, "cuda_driver": self.cuda_driver, "problem": self.problem,
                "gpus": [g.__dict__ for g in self.gpus]}


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def probe():
    """Query NVML; a missing library/driver becomes ``problem``, not an exception."""
    try:
        import pynvml
    except ImportError:
        return GpuReport(problem="nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return GpuReport(problem="no NVIDIA driver found (NVML: %s)" % err)
    try:
        version = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        report = GpuReport(driver=_text(pynvml.nvmlSystemGetDriverVersion()),
                           cuda_driver="%d.%d" % (version // 1000, (version % 1000) // 10))
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2 ** 30
            report.gpus.append(Gpu(i, _text(pynvml.nvmlDeviceGetName(handle)), round(memory, 1),
                                   "%d.%d" % (major, minor)))
        if not report.gpus:
            report.problem = "the NVIDIA driver reports no GPU"
        return report
    except pynvml.NVMLError as err:
        return GpuReport(problem="NVML query failed: %s" % err)
    finally:
        pynvml.nvmlShutdown()


def _version(text):
    return tuple(int(p) for p in text.split(".")) if text else ()


def image_problems(report, image_labels):
    """Why the image's torch cannot use these GPUs ([] when it can)."""
    cuda = image_labels.get("io.pose-train.cuda.version", "")
    if not cuda:
        return ["the image has a CPU-only torch build (variant %s)" % image_labels.get("io.pose-train.variant", "?")]
    problems = []
    if report.cuda_driver and _version(report.cuda_driver) < _version(cuda):
        problems.append("driver %s supports CUDA %s but the image needs CUDA %s: update the NVIDIA driver"
                        % (report.driver, report.cuda_driver, cuda))
    archs = image_labels.get("io.pose-train.cuda.archs", "").split()
    for gpu in report.gpus:
        # Kernels for an older capability run on newer GPUs only through PTX JIT within the same
        # major version; across majors (torch 1.4 on sm_80+) there is nothing to run.
        same_major = [a for a in archs if a.split(".")[0] == gpu.capability.split(".")[0]
                      and _version(a) <= _version(gpu.capability)]
        if archs and gpu.capability not in archs and not same_major:
            problems.append("GPU %d (%s, compute capability %s) has no kernels in torch %s (built for %s)"
                            % (gpu.index, gpu.name, gpu.capability,
                               image_labels.get("io.pose-train.torch.version", "?"), " ".join(archs)))
    return problems
