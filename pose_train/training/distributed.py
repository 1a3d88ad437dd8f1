"""DDP plumbing shared by the trainers: process-group setup, samplers, agreeing across ranks.

torchrun (single or multi-node) sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
``spawn_local`` starts N local processes the same way when the user asked for ``--gpus N`` without
torchrun. Multi-node: run on every node
  torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \
      -m pose_train --local train dope ...
"""
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from pose_train import environment
from pose_train.training import nodes
from pose_train.training.signals import handled


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def init_distributed(device_type=None, command=None):
    """Read the torchrun environment, pick the device, init the process group when world > 1.

    NCCL on CUDA, gloo on CPU (the CPU path exists for tests and for debugging on a laptop).
    """
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    # Several nodes: they agree on the command, and node 0's first process becomes rank 0.
    renumbered = nodes.agreed_rank(command)
    rank = rank if renumbered is None else renumbered
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device_type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        if rank == 0 and os.environ.get(environment.RUNTIME) == "modern" \
                and not os.environ.get(environment.RUN_ID):
            # In our image no CUDA device means the container was started without GPUs
            # (compose's default file, or a host without the NVIDIA toolkit): say how to get them.
            # The launcher (RUN_ID) has said why on the host already.
            print("pose-train: warning: no CUDA device in this container: training on the CPU (slow). "
                  "GPUs: COMPOSE_FILE=compose.yaml:compose.gpu.yaml docker compose run ..., or run "
                  "`pose-train doctor` on the host.", file=sys.stderr, flush=True)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                device_id=device if device_type == "cuda" else None)
    return DistInfo(rank, world, local, device)


def make_sampler(dataset, info, shuffle=True, seed=0, accumulate=1, micro=0):
    """DistributedSampler even on one process: its order depends only on (seed, epoch), which is
    what exact resume needs, and each rank gets a disjoint 1/world share of every epoch.

    With gradient accumulation a process stands for ``accumulate`` ranks of a world that many
    times larger, its ``micro``-th batch of a step being that virtual rank's: so 1 process
    accumulating 2 batches draws exactly what 2 processes draw."""
    return DistributedSampler(dataset, num_replicas=info.world_size * accumulate,
                              rank=virtual_rank(info.rank, accumulate, micro),
                              shuffle=shuffle, seed=seed, drop_last=False)


def virtual_rank(rank, accumulate, micro):
    """The rank a process's ``micro``-th accumulated batch stands for (see make_sampler)."""
    return rank * accumulate + micro


def share_cores(info):
    """On the CPU, split the cores between this machine's processes instead of oversubscribing
    them; an explicit OMP_NUM_THREADS from the user wins."""
    if info.device.type == "cpu" and info.world_size > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))


def wrap_model(model, info, compile=False):
    """DistributedDataParallel across ranks, then torch.compile: the order DDP documents."""
    net = model
    if info.distributed:
        ids = [info.local_rank] if info.device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(net) if compile else net


def no_sync(model):
    """DDP's no_sync (also through torch.compile's wrapper): no gradient all-reduce in the
    backward passes of a step's accumulated batches but the last."""
    sync_off = getattr(model, "no_sync", None)
    return sync_off() if sync_off is not None else contextlib.nullcontext()


def _reduce(value, info, op):
    if not info.distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=op)
    return t.item()


def any_rank(flag, info):
    """True on every rank if it is true on any: all ranks must stop at the same step."""
    return bool(_reduce(1.0 if flag else 0.0, info, dist.ReduceOp.MAX))


def sum_ranks(value, info):
    return _reduce(value, info, dist.ReduceOp.SUM)


def mean_over_ranks(value, info):
    """A step's loss as every rank's batches make it (what one process accumulating them all
    reports). A device tensor stays on the device: no host sync."""
    if not info.distributed:
        return value
    if not torch.is_tensor(value):
        return sum_ranks(value, info) / info.world_size
    total = value.detach().reshape(1).clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return (total / info.world_size).reshape(())


def barrier(info):
    if info.distributed:
        dist.barrier()


def cleanup(info):
    if info.distributed and dist.is_initialized():
        # A rank that tears its gloo pairs down while a peer is still finishing its last
        # collective aborts that peer ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_entry(local_rank, fn, nprocs, port, args):
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    fn(*args)


def spawn_local(fn, nprocs, *args):
    """Run ``fn(*args)`` in ``nprocs`` local processes with the torchrun environment set. A
    SIGTERM or SIGHUP to this process alone (a scheduler, ``kill PID``) is passed on to every
    rank, which stop at one step and save, as they do when each gets it."""
    import torch.multiprocessing as mp
    context = mp.start_processes(_spawn_entry, args=(fn, nprocs, _free_port(), args),
                                 nprocs=nprocs, join=False, start_method="spawn")
    with _passed_on(context.processes):
        while not context.join():
            pass


def _passed_on(processes, signals=(signal.SIGTERM, signal.SIGHUP)):
    """Not SIGINT: Ctrl-C reaches the whole process group already, and a second one means
    "abort without saving" to a rank."""
    def pass_on(signum, frame):
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signum)
    return handled(signals, pass_on)


def requested_processes(gpus):
    """--gpus N (0 means the CPU: one process), else one process per visible GPU, else 1."""
    from pose_train.errors import UserError
    if gpus is None:
        return max(1, torch.cuda.device_count())
    if torch.cuda.is_available() and gpus > torch.cuda.device_count():
        raise UserError("--gpus %d but only %d CUDA devices are visible" % (gpus, torch.cuda.device_count()))
    return max(1, gpus)


def run_processes(run_rank, args, gpus):
    """Run ``run_rank(args)`` in every requested process: in this one when there is one process
    or torchrun already started us, else in ``spawn_local`` children."""
    from pose_train.errors import UserError
    world = requested_processes(gpus)
    if world == 1 or "WORLD_SIZE" in os.environ:
        return run_rank(args)
    backend = "NCCL" if torch.cuda.is_available() else "gloo on CPU"
    print("starting %d local processes (%s)" % (world, backend), flush=True)
    import torch.multiprocessing as mp
    try:
        spawn_local(_rank_main, world, run_rank, args)
    except mp.ProcessExitedException as err:
        raise UserError("training process %d exited with code %s (its message is above)"
                        % (err.error_index, err.exit_code), code=err.exit_code or 1)
    return 0


def _rank_main(run_rank, args):
    """A spawned rank: a UserError becomes one line on stderr and its exit code, as in cli.main."""
    import sys
    from pose_train_py27.errors import InputError
    try:
        code = run_rank(args)
    except InputError as err:
        print("pose-train: error: %s" % err, file=sys.stderr, flush=True)
        sys.exit(err.code)
    sys.exit(code or 0)
