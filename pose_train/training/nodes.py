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
from pose_train.errors import Interrupted, UserError

# What compose's multi-node form sets on each node (compose.nodes.yaml).
ENVIRONMENT = {"nnodes": "NNODES", "node_rank": "NODE_RANK", "rdzv": "RDZV"}
NODE_RANK_ENV = environment.NODE_RANK   # to the workers: this node's --node_rank
DEFAULT_PORT = 29400
BAD_INPUT = 2          # the exit code of a process that ended on a UserError (its one line)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def from_environment(args, environ=None):
    """Fill the node flags the command line left out from NNODES / NODE_RANK / RDZV (a flag
    given wins: clusters often export NODE_RANK for other tools)."""
    environ = os.environ if environ is None else environ
    rank_given = args.node_rank is not None
    meaning = {"nnodes": "the number of machines", "node_rank": "this machine's number, 0 first"}
    for name, variable in ENVIRONMENT.items():
        if environ.get(variable) and getattr(args, name) is None:
            value = environ[variable]
            try:
                setattr(args, name, value if name == "rdzv" else int(value))
            except ValueError:
                raise UserError("%s=%r is not a whole number; set it to %s"
                                % (variable, value, meaning[name]))
    if args.node_rank is None:
        args.node_rank = 0
    if args.node_rank and (args.nnodes or 1) < 2:
        if rank_given:
            raise UserError("--node_rank %d is for several machines: give every node --nnodes N "
                            "(N > %d) and --rdzv HOST:PORT, or leave --node_rank out on one"
                            % (args.node_rank, args.node_rank))
        args.node_rank = 0    # NODE_RANK exported for another tool: one machine is node 0


def asked(args):
    """Whether this run joins several nodes (and has not been started by torchrun already)."""
    return bool(args.rdzv or (args.nnodes or 1) > 1) and "TORCHELASTIC_RUN_ID" not in os.environ


def endpoint(text):
    """``HOST:PORT`` -> (host, port); one line naming the flag when it is not."""
    host, _, port = str(text).rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536 or not host.strip("[]"):
        raise UserError("--rdzv takes HOST:PORT, node 0's address as every node reaches it and a "
                        "free port, e.g. 10.0.0.1:%d; got %r" % (DEFAULT_PORT, text))
    return host.strip("[]"), int(port)


def check(args):
    if (args.nnodes or 1) > 1 and not args.rdzv:
        raise UserError("--nnodes %d needs --rdzv HOST:PORT: node 0's address as every node "
                        "reaches it, the same on every node" % args.nnodes)
    if (args.nnodes or 1) < 2:
        raise UserError("--rdzv is for several machines: give every node --nnodes N, the number "
                        "of machines (one machine needs neither; --gpus N runs N processes)")
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



CPP_LOG = "TORCH_CPP_LOG_LEVEL"
_quieted = []


def quiet_connection_errors(args):
    """Before torch loads, in a several-machine run's launching process only: torch's C++
    logger prints every failed connection try to the rendezvous with a stack of C++ frames,
    ahead of the one line that says what to check. Its level is read once, as libtorch loads;
    launch() takes the setting back before the workers start, so theirs (NCCL's, gloo's) print."""
    wanted = args.rdzv or (args.nnodes or 1) > 1 or os.environ.get(ENVIRONMENT["rdzv"])
    if wanted and CPP_LOG not in os.environ and "torch" not in sys.modules:
        os.environ[CPP_LOG] = "FATAL"
        _quieted.append(CPP_LOG)


def this_node():
    """This process's node (0 outside a several-machine run)."""
    return int(os.environ.get(NODE_RANK_ENV) or 0)


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
    while _quieted:
        os.environ.pop(_quieted.pop(), None)
    if args.node_rank == 0:
        _port_free(args.rdzv)
    os.environ[NODE_RANK_ENV] = str(args.node_rank)
    os.environ[environment.AGENT_PID] = str(os.getpid())
    os.environ[environment.LOCAL] = "1"   # the workers run the job in-process, as here
    print("node %d of %d: %d process(es), rendezvous %s (c10d, waiting up to %g s for every node)"
          % (args.node_rank, args.nnodes or 1, processes, args.rdzv, args.rdzv_timeout), flush=True)
    try:
        _agent(config, args.node_rank)
    except RendezvousError as err:
        who = ("every other node runs the same command (--nnodes %d, each its own --node_rank, "
               "none of them 0) and reaches %s" % (args.nnodes, args.rdzv) if args.node_rank == 0 else
               "node 0 runs the same command with --node_rank 0 and --nnodes %d, and that %s is "
               "reachable from this node" % (args.nnodes, args.rdzv))
        raise UserError("no rendezvous at %s within %g s (%s): check that %s (firewall; in a "
                        "container, the host's network)" % (args.rdzv, args.rdzv_timeout,
                                                            type(err).__name__, who))
    except ChildFailedError as err:
        codes = sorted({f.exitcode for f in err.failures.values()})
        if codes == [BAD_INPUT]:
            return BAD_INPUT    # each process has said what was wrong, in one line
        raise UserError("a training process on node %d failed (exit code %s; its message is "
                        "above)" % (args.node_rank, ", ".join(map(str, codes))),
                        code=codes[-1] if codes and codes[-1] > 0 else 1)
    return 0


def _port_free(rdzv):
    """Node 0 hosts the rendezvous on its port: taken already (most often by a node 0 started
    twice on this machine, a --node_rank left unchanged), every node would wait out the timeout."""
    import socket
    host, port = endpoint(rdzv)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            raise UserError("port %d on this machine is taken, so this node 0 cannot host the "
                            "rendezvous: is another node running with --node_rank 0 here? Give "
                            "each node its own --node_rank, or pick a free port in --rdzv" % port)


def die_with_agent(environ=None):
    """A training process ends (as on SIGTERM: every node stops at the next step, the state
    is saved) when the pose-train that started it dies, even by SIGKILL, instead of training
    on alone: Linux's parent-death signal."""
    environ = os.environ if environ is None else environ
    agent = environ.get(environment.AGENT_PID)
    if not agent or not sys.platform.startswith("linux"):
        return
    import ctypes
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != int(agent):      # it died before the signal was asked for
        raise UserError("the pose-train that started this training process has ended")


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

    signals = []

    def forward(signum, frame):
        children, name = _children(), signal.Signals(signum).name
        signals.append(signum)
        if not children:    # still waiting for the other nodes: nothing to save
            raise Interrupted(signum)     # exits 128 + the signal, as a shell does
        again = len(signals) > 1   # asked twice: the workers may be stuck; end them now
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL if again else signum)
            except ProcessLookupError:
                pass
        print("node %d: %s %s its %d process(es)" % (
            node_rank, name, "again: killed" if again else "passed to", len(children)),
            file=sys.stderr, flush=True)

    # Its handlers need the main thread (said once, as wanted here); a failed process is
    # reported by launch() after the process's own line, and a failed rendezvous by its error.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    logging.getLogger("torch.distributed.elastic.rendezvous.dynamic_rendezvous").setLevel(logging.ERROR)
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


def _children(parent=None):
    """This process's (or ``parent``'s) direct children (torchrun's workers, each in its own
    session)."""
    me, found = parent or os.getpid(), []
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


# Flags each node may give its own way: where things are on that machine, and how it runs.
LOCAL_FLAGS = {"node_rank", "data", "val", "outf", "net", "pretrained", "load_model", "workers",
               "gpus", "rdzv", "nproc_per_node", "rdzv_timeout"}


def agreed_rank(command, environ=None, timeout_s=300):
    """Before the process group forms: every worker posts its node's --node_rank, process count
    and command to torchrun's store and reads everyone's. Nodes that disagree (a --node_rank
    given twice, different --nproc_per_node, one node resuming and another not) get the same
    one line on every rank instead of a hang. Returns this worker's rank renumbered by
    --node_rank (node 0's first process is 0), or None outside a several-node run."""
    environ = os.environ if environ is None else environ
    if NODE_RANK_ENV not in environ or "TORCHELASTIC_RUN_ID" not in environ:
        return None
    die_with_agent(environ)
    import json
    from datetime import timedelta
    from torch.distributed import TCPStore
    rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
    store = TCPStore(environ["MASTER_ADDR"], int(environ["MASTER_PORT"]), is_master=False,
                     timeout=timedelta(seconds=timeout_s))
    mine = {"node": int(environ[NODE_RANK_ENV]), "procs": int(environ["LOCAL_WORLD_SIZE"]),
            "local": int(environ["LOCAL_RANK"]),
            "command": {k: v for k, v in sorted((command or {}).items()) if k not in LOCAL_FLAGS}}
    store.set("pose-train/agree/%d" % rank, json.dumps(mine, default=str))
    keys = ["pose-train/agree/%d" % r for r in range(world)]
    store.wait(keys)
    everyone = [json.loads(store.get(key)) for key in keys]
    _refuse_disagreement(everyone, world)
    return mine["node"] * mine["procs"] + mine["local"]


def _refuse_disagreement(everyone, world):
    procs = sorted({w["procs"] for w in everyone})
    if len(procs) > 1:
        raise UserError("the nodes run different numbers of processes (%s): give every node the "
                        "same --nproc_per_node" % ", ".join(map(str, procs)))
    per_node = {}
    for w in everyone:
        per_node[w["node"]] = per_node.get(w["node"], 0) + 1
    twice = sorted(n for n, count in per_node.items() if count > procs[0])
    if twice or sorted(per_node) != list(range(world // procs[0])):
        raise UserError("--node_rank %s was given to two nodes: number them 0..%d, each its own"
                        % (twice[0] if twice else sorted(per_node), world // procs[0] - 1))
    first = everyone[0]["command"]
    for w in everyone[1:]:
        differ = sorted(k for k in set(first) | set(w["command"])
                        if first.get(k) != w["command"].get(k))
        if differ:
            flag = differ[0]
            raise UserError("the nodes were given different commands: --%s %s on node %d, %s on "
                            "node %d; run the same command on every node (only --node_rank and "
                            "the paths may differ)" % (flag, _shown(first.get(flag)),
                                                       everyone[0]["node"],
                                                       _shown(w["command"].get(flag)), w["node"]))


def _shown(value):
    return "not given" if value is None else str(value)
