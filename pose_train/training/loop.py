"""The epoch loop both trainers run; they supply only what differs (one epoch, its ending).

Stopping: the first SIGTERM/SIGINT or the time limit asks every rank to stop at the next
step boundary (GracefulStop, TimeLimit); the state is saved there and the "continue with:"
line the trainer made from its job's declaration is printed. After each full epoch the trainer's
``end_epoch`` runs on the main rank, then the state is saved for the next epoch.
"""
import os
from dataclasses import dataclass

from pose_train.training import distributed as ddp
from pose_train.training import nodes
from pose_train.training.metrics_log import MetricsLog
from pose_train.training.signals import GracefulStop


@dataclass
class EpochResult:
    """What a trainer's epoch function returns (both trainers' step modules)."""
    status: str          # "done" | "stopped"
    next_step: int       # steps done in this epoch (where a resume continues)
    loss_mean: float     # over the epoch's steps so far, those before a resume included
    loss_sum: float      # (loss_sum, loss_steps): what a mid-epoch state carries on
    loss_steps: int
    samples: int         # over all ranks
    seconds: float
    loader_wait: float   # seconds this rank waited for batches


class EpochLoop:
    """One run's loop. ``loop.should_stop()`` is what a step loop asks after every step."""

    def __init__(self, continue_command, args, info, time_limit, state_name, state_flag):
        self.continue_command, self.args, self.info = continue_command, args, info
        self.state_flag = state_flag
        self.time_limit = time_limit
        self.state_path = os.path.join(args.outf, state_name)
        self.stop = GracefulStop()
        self.stopping = False    # a stop was asked during the epoch that just ended
        self.log = None

    def should_stop(self):
        """A signal or the time limit on any rank stops every rank at the same step."""
        self.time_limit.tick()
        if self.time_limit.expired():
            self.stop.request("time limit")
        return ddp.any_rank(self.stop.requested, self.info)

    def say(self, *args, **kwargs):
        if self.info.is_main:
            print(*args, **kwargs)

    def node_say(self, text):
        """A line from the first process of every node but node 0, whose log would otherwise
        end without a word on how the run ended (node 0's rank 0 writes every file)."""
        node = nodes.this_node()
        if node and self.info.local_rank == 0:
            print("node %d: %s" % (node, text), flush=True)

    def run(self, epochs, train_epoch, end_epoch, save_state):
        """Train ``epochs`` (pairs of epoch, counted from 1, and first step); True when all
        of them ran.

        train_epoch(epoch, first_step) -> the step to continue at when stopped, else None;
        end_epoch(epoch) and save_state(epoch, step) run on the main rank only.
        """
        with self.stop, MetricsLog(os.path.join(self.args.outf, "metrics.jsonl"),
                                   tensorboard=os.path.join(self.args.outf, "tensorboard"),
                                   enabled=self.info.is_main) as self.log:
            for epoch, first_step in epochs:
                next_step = train_epoch(epoch, first_step)
                if next_step is not None:
                    if self.info.is_main:
                        save_state(epoch, next_step)
                    self.say(self.stopped_message(epoch, next_step), flush=True)
                    self.node_say("stopped with every node at epoch %d step %d (%s); node 0 "
                                  "saved the state in %s: rerun this node's command with "
                                  "--resume auto" % (epoch, next_step, self.stop.reason or
                                                     "a stop on another node", self.state_path))
                    ddp.barrier(self.info)
                    return False
                # A signal during the epoch's last step: the epoch ends (its weights are
                # written; end_epoch may skip slow work, see ``stopping``) and the run stops
                # here, not one step into the next epoch.
                self.stopping = ddp.any_rank(self.stop.requested, self.info)
                if self.info.is_main:
                    end_epoch(epoch)
                    save_state(epoch + 1, 0)
                ddp.barrier(self.info)   # the epoch's files are on disk before any rank reads them
                asked = self.stopping or ddp.any_rank(self.stop.requested, self.info)
                if asked and epoch != epochs[-1][0]:   # (a signal during end_epoch too)
                    self.say(self.stopped_message(epoch + 1, 0), flush=True)
                    self.node_say("stopped with every node at epoch %d step 0 (%s); node 0 saved "
                                  "the state in %s: rerun this node's command with --resume "
                                  "auto" % (epoch + 1, self.stop.reason or "a stop on another "
                                            "node", self.state_path))
                    return False
        if epochs:
            self.node_say("done: epochs %d..%d; node 0 wrote the weights in %s"
                          % (epochs[0][0], epochs[-1][0], self.args.outf))
        return True

    def stopped_message(self, epoch, step):
        name = os.path.basename(self.state_path)
        several = (getattr(self.args, "nnodes", None) or 1) > 1
        reason = self.stop.reason or "a stop on another %s" % ("node or process" if several
                                                                 else "process")
        return ("stopped by %s at epoch %d step %d; state saved in %s\ncontinue with: %s\n%s"
                "(in a new session, e.g. Kaggle: pass %s <copy of %s> instead of --resume auto)"
                % (reason, epoch, step, self.state_path, self.continue_command,
                   "(every node: the same, with its own --node_rank)\n" if several else "",
                   self.state_flag, name))
