"""Training on several machines: a trainer under torchrun's elastic launch and c10d rendezvous.

Every node runs the same train command with its own ``--node_rank``; ``--rdzv HOST:PORT`` is
node 0's rendezvous, which node 0 hosts. This process becomes the node's torchrun agent
(``torch.distributed.run``, in-process), which starts ``--nproc_per_node`` workers running the
same job, with torchrun's RANK / WORLD_SIZE / LOCAL_RANK set.
torchrun numbers nodes in the order it sorts them; the workers renumber themselves by
``--node_rank`` (``global_rank``), so global rank 0, the one that writes weights, state and
metrics, is always node 0's first process. The output folder must be one folder every node
sees (a shared file system): every rank reads a resumed state from it.
"""
import os
import signal
import sys
import threading

from pose_train import environment
from pose_train.errors import UserError

FIELDS = ("nnodes", "node_rank", "rdzv", "nproc_per_node", "rdzv_timeout")
# What compose's multi-node form sets on each node (compose.nodes.yaml).
ENVIRONMENT = {"nnodes": "NNODES", "node_rank": "NODE_RANK", "rdzv": "RDZV"}
NODE_RANK_ENV = environment.NODE_RANK   # to the workers: this node's --node_rank
DEFAULT_PORT = 29400
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def from_environment(args, environ=None):
    """Fill the node flags the command line left out from NNODES / NODE_RANK / RDZV."""
    environ = os.environ if environ is None else environ
    for name, variable in ENVIRONMENT.items():
        if environ.get(variable) and getattr(args, name) in (None, 0):
            value = environ[variable]
            try:
                setattr(args, name, value if name == "rdzv" else int(value))
            except ValueError:
                raise UserError("%s=%r is not a whole number; set it to this node's %s"
                                % (variable, value, name.replace("_", " ")))


def asked(args):
    """Whether this run joins several nodes (and has not been started by torchrun already)."""
    return bool(args.rdzv or (args.nnodes or 1) > 1) and "TORCHELASTIC_RUN_ID" not in os.environ


def endpoint(text):
    """``HOST:PORT`` -> (host, port); one line naming the flag when it is not."""
    host, _, port = str(text).rpartition(":")
    if not host:
        host, port = str(text), str(DEFAULT_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536 or not host.strip("[]"):
        raise UserError("--rdzv takes HOST:PORT, node 0's address as every node reaches it and a "
                        "free port, e.g. 10.0.0.1:%d; got %r" % (DEFAULT_PORT, text))
    return host.strip("[]"), int(port)


def check(args):
    if (args.nnodes or 1) > 1 and not args.rdzv:
        raise UserError("--nnodes %d needs --rdzv HOST:PORT: node 0's address as every node "
                        "reaches it, the same on every node" % args.nnodes)
    nnodes = args.nnodes or 1
    if not 0 <= args.node_rank < nnodes:
        raise UserError("--node_rank %d is not one of 0..%d (--nnodes %d): number the nodes "
                        "from 0, node 0 hosting the rendezvous" % (args.node_rank, nnodes - 1, nnodes))
    return endpoint(args.rdzv)


def torchrun_argv(args, processes):
    """torchrun's own arguments for this node (its workers run ``python -m pose_train``)."""
    host, port = check(args)
    timeout = int(max(2, round(args.rdzv_timeout)))
    # A node that cannot reach the store tries twice, each try waiting read_timeout.
    conf = "join_timeout=%d,read_timeout=%d,is_host=%s" % (
        timeout, timeout // 2, "true" if args.node_rank == 0 else "false")
    # No --node_rank: c10d ignores it; the workers renumber themselves by it (global_rank).
    return ["--nnodes", str(args.nnodes or 1),
            "--nproc_per_node", str(processes), "--rdzv_backend", "c10d",
            "--rdzv_endpoint", "%s:%d" % (host, port), "--rdzv_id", "pose-train",
            "--rdzv_conf", conf, "--max_restarts", "0", "--monitor_interval", "1",
            "-m", "pose_train"]



def launch(args, job_argv, processes):
    """Run this node's torchrun agent until every node's workers end; 0 when they all did.
    ``job_argv``: the job the workers run, this one with its node flags (for their "continue
    with:" line; torchrun having started them, they do not launch again)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import get_args_parser
    # Parsed apart from the job's flags: torchrun's parser would take --rdzv=... for its own.
    config = get_args_parser().parse_args(torchrun_argv(args, processes))
    config.training_script_args = list(job_argv)
    os.environ[NODE_RANK_ENV] = str(args.node_rank)
    os.environ[environment.LOCAL] = "1"   # the workers run the job in-process, as here
    print("node %d of %d: %d processes, rendezvous %s (c10d, waiting up to %g s for every node)"
          % (args.node_rank, args.nnodes or 1, processes, args.rdzv, args.rdzv_timeout), flush=True)
    try:
        _agent(config, args.node_rank)
    except RendezvousError as err:
        raise UserError("no rendezvous at %s within %g s (%s): check that node 0 runs the same "
                        "command with --node_rank 0 and --nnodes %d, and that %s is reachable "
                        "from this node (firewall; in a container, the host's network)"
                        % (args.rdzv, args.rdzv_timeout, type(err).__name__, args.nnodes or 1,
                           args.rdzv))
    except ChildFailedError as err:
        codes = sorted({f.exitcode for f in err.failures.values()})
        raise UserError("a training process on node %d failed (exit code %s; its message is "
                        "above)" % (args.node_rank, ", ".join(map(str, codes))),
                        code=codes[-1] if codes and codes[-1] > 0 else 1)
    return 0


def _agent(config, node_rank):
    """torchrun's agent in a thread, this (main) thread passing stop signals to the workers.

    torchrun's own handlers would end the agent on a signal, leaving the other nodes' agents
    waiting minutes at their exit barrier; passed on instead, the workers stop at the step
    every node agrees on, the state is saved, and every agent ends as after a finished run.
    """
    import logging
    from torch.distributed.run import run
    outcome = {}

    def target():
        try:
            run(config)
        except BaseException as err:   # re-raised in the main thread
            outcome["error"] = err

    def forward(signum, frame):
        children = _children()
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        print("node %d: %s passed to its %d processes" % (node_rank, signal.Signals(signum).name,
                                                          len(children)), file=sys.stderr, flush=True)

    # Its handlers need the main thread; it says so once, which is what is wanted here.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.ERROR)
    thread = threading.Thread(target=target, name="torchrun-agent", daemon=True)
    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "error" in outcome:
        raise outcome["error"]


def _children():
    """This process's direct children (torchrun's workers, each in its own session)."""
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                found.append(int(name))
    return found


def global_rank(environ=None):
    """This worker's rank renumbered by --node_rank (node 0's first process is 0), or None
    outside a several-node run. Every node must run the same number of processes."""
    environ = os.environ if environ is None else environ
    if NODE_RANK_ENV not in environ or "LOCAL_WORLD_SIZE" not in environ:
        return None
    local_world = int(environ["LOCAL_WORLD_SIZE"])
    if int(environ["WORLD_SIZE"]) % local_world:
        raise UserError("the nodes run different numbers of processes (%s in all, %d here): "
                        "give every node the same --nproc_per_node" % (environ["WORLD_SIZE"], local_world))
    return int(environ[NODE_RANK_ENV]) * local_world + int(environ["LOCAL_RANK"])
