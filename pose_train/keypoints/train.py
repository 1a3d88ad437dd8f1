"""`pose-train train keypoints`: train FastPose on a prepared LINEMOD keypoint folder.

The seed trains in two runs chained by hand: first without DPG, then `--loadModel
best --addDPG`. Both ways work here, and `--dpg_from_epoch E` does it in one run: the
first E epochs train without DPG; at epoch E the best weights so far are reloaded and a
fresh optimizer starts, exactly as the manual second run would, and DPG is on from then.

Files in OUTF: best.pkl (best validation PCK so far), model_N.pkl (every --snapshot
epochs), final.pkl: weights only, kp6d's key layout, no `module.` prefix; each with a
json sidecar (best.json, ...) holding normalisation, input size and the 3D keypoints.
training_state.pt: everything needed to continue (--resume auto), written atomically
at every epoch end and when a signal or --time_limit stops the run. metrics.jsonl: one
line per epoch.

Several GPUs: one process each (DistributedDataParallel; --gpus N, default every visible
GPU, or torchrun). --trainBatch is the batch of one optimizer step over all processes,
as under kp6d's DataParallel; rank 0 validates and writes every file.
"""
import os
from dataclasses import dataclass, field

import torch

from pose_train import pretrained
from pose_train.errors import UserError
from pose_train.files import job_folder, report_stale_temps, write_sidecar
from pose_train.jobs import JOBS, check_inputs, command_words, continue_line, namespace
from pose_train.keypoints import data as kpdata
from pose_train.keypoints import model as kpmodel, steps, transforms
from pose_train.training import checkpoint_io as ckpt
from pose_train.training import distributed as ddp
from pose_train.training import nodes
from pose_train.training.loop import EpochLoop
from pose_train.training.metrics_log import rewind
from pose_train.training.signals import TimeLimit

STATE_NAME = ckpt.STATE_NAME


@dataclass
class Run:
    """What one run's epochs share: the model, its optimizer, the data and the step settings."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_data: dict
    val_data: dict
    cfg: steps.StepConfig
    add_dpg: bool
    dpg_from: int = None
    time_limit: TimeLimit = None
    last_rate: float = 0.0
    meta: dict = field(default_factory=dict)   # what a weights file's json sidecar says
    pose_check: tuple = None     # (annotations, crops, model) for the validation poses
    info: ddp.DistInfo = field(default_factory=ddp.DistInfo)
    epoch_loss: tuple = (0.0, 0)  # (loss sum, steps) of the epoch a mid-epoch state stopped in

    def say(self, *a, **kw):
        if self.info.is_main:
            print(*a, **kw)

    def use_dpg(self, epoch):
        """DPG in ``epoch`` (from 1): with --addDPG, or after the first --dpg_from_epoch epochs."""
        return self.add_dpg or (self.dpg_from is not None and epoch > self.dpg_from)

    def dpg_starts(self, epoch):
        """The first epoch of a one-run schedule's DPG stage (none when DPG is on from epoch 1)."""
        return bool(self.dpg_from) and epoch == self.dpg_from + 1


def check_args(args):
    """What one field's declaration cannot say (pose_train.jobs.keypoints has the rest)."""
    if args.dpg_from_epoch is not None and not 0 <= args.dpg_from_epoch <= args.epochs:
        raise UserError("--dpg_from_epoch must be between 0 and --epochs")
    procs = ddp.requested_processes(args.nproc_per_node or args.gpus) * (args.nnodes or 1)
    share = procs * args.accumulate
    if args.train_batch % share:
        split = "%d process%s" % (procs, "" if procs == 1 else "es") + (
            " x --accumulate %d" % args.accumulate if args.accumulate > 1 else "")
        raise UserError("--trainBatch %d is split over %s; make it a multiple of %d"
                        % (args.train_batch, split, share))


def load_data(args, device, say=print):
    folder = kpdata.find_prepared(args.data, args.seq, args.kptype, args.n_classes)
    ann, crops = kpdata.load_prepared(folder)
    if args.n_classes is not None and args.n_classes != ann["kpnum"]:
        raise UserError("--nClasses %d but %s has %d keypoints" % (args.n_classes, folder, ann["kpnum"]))
    train = kpdata.to_device(ann, crops, kpdata.split_indices(ann, "train"), device)
    val = kpdata.to_device(ann, crops, kpdata.split_indices(ann, "test"), device)
    say("data: %s, %d train / %d validation frames, %d keypoints"
          % (folder, len(train["index"]), len(val["index"]), ann["kpnum"]))
    return ann, train, val


def build_model(args, kpnum, device, say=print):
    net = kpmodel.build(kpnum, args.arch)
    # A training state or --loadModel replaces every weight: no trunk to start (or warn about).
    resumes = ckpt.find_latest_state(args.outf) if str(args.resume) == "auto" else args.resume
    weights = (None if args.load_model or resumes
               else pretrained.resolve(args.pretrained, args.arch, say))
    if weights:
        kpmodel.load_pretrained(net, weights)
    if args.load_model:
        kpmodel.load_weights(net, args.load_model)
        say("loaded %s (strict)" % args.load_model)
    net.to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    return net


def weights_meta(args, ann):
    """Facts the weights cannot carry, for the json sidecar beside each .pkl (compat's convert
    copies it along): normalisation, input size, and the 3D keypoints PnP needs."""
    return {"model": "fastpose", "arch": args.arch, "num_classes": ann["kpnum"], "seq": ann["seq"],
            "kptype": ann["kptype"], "keypoints_3d": ann["keypoints_3d"], "diameter": ann["diameter"],
            "symmetric": ann["symmetric"], "input_hw": [args.input_res_h, args.input_res_w],
            "heatmap_stride": 4, "sigma": args.hm_gauss, "key_prefix": "",
            "normalization": {"name": "alphapose", "mean": list(transforms.MEAN), "std": [1.0, 1.0, 1.0],
                              "note": "RGB in [0,1], minus mean, no division"}}


def save_weights(run, path, **facts):
    """Weights (kp6d layout, no prefix) and PATH-without-.pkl + .json, both written atomically."""
    net = ckpt.unwrap(run.model)
    ckpt.atomic_save({k: v.detach().float().cpu() for k, v in net.state_dict().items()}, path)
    write_sidecar(path, dict(run.meta, weights=os.path.basename(path), **facts))


def switch_to_dpg(run, args, outf):
    """Start of the second stage: best weights so far, fresh optimizer (the seed's manual way)."""
    best = os.path.join(outf, "best.pkl")
    if os.path.isfile(best):
        kpmodel.load_weights(ckpt.unwrap(run.model), best)
    run.optimizer = kpmodel.make_optimizer(args.opt_method, run.model.parameters(), args.lr)
    run.say("stage 2: DPG on from epoch %d, restarting from %s" % (args.dpg_from_epoch + 1,
          best if os.path.isfile(best) else "the current weights (no best.pkl yet)"))


def resume(args, run, outf):
    """(epoch, step, best) to continue from; (1, 0, -1) for a fresh run. metrics.jsonl is
    rewound to match (a fresh file, or the records before the state's step)."""
    path = args.resume
    if str(path) == "auto":
        path = ckpt.find_latest_state(outf)
        if path is None:
            run.say("resume auto: no %s in %s, starting fresh" % (STATE_NAME, outf))
    metrics = os.path.join(outf, "metrics.jsonl")
    if path in (None, "", False):
        if run.info.is_main:
            rewind(metrics)
        return 1, 0, -1.0
    state = ckpt.load_state(path, map_location="cpu")
    ckpt.same_steps_mid_epoch(path, state, args, {"train_batch": "--trainBatch",
                                                  "accumulate": "--accumulate"})
    epoch, step = ckpt.restore_state(state, model=run.model, optimizer=run.optimizer)
    run.epoch_loss = ckpt.epoch_loss(state)
    run.say("resumed %s at epoch %d step %d" % (path, epoch, step))
    if run.info.is_main:
        rewind(metrics, (epoch, step))
    return epoch, step, float(state["extra"].get("best_acc", -1.0))


def save_state(run, args, outf, epoch, step, best_acc):
    ckpt.save_state(os.path.join(outf, STATE_NAME), run.model, run.optimizer, epoch, step,
                    config=vars(args), extra={"best_acc": best_acc,
                                              "normalization": run.meta["normalization"],
                                              "input_hw": list(run.cfg.input_hw)},
                    epoch_loss=run.epoch_loss)


def end_epoch(run, args, outf, epoch, loss, log, best_acc):
    """Validate, write best/snapshot weights, log; returns the new best accuracy."""
    acc, val_loss, empty = steps.validate(run.model, run.val_data, run.cfg)
    poses = pose_figures(run, args)
    if acc > best_acc:
        best_acc = acc
        save_weights(run, os.path.join(outf, "best.pkl"), epoch=epoch, pck=acc)
    if args.snapshot and epoch % args.snapshot == 0:
        save_weights(run, os.path.join(outf, "model_%d.pkl" % epoch), epoch=epoch, pck=acc)
    lr = run.optimizer.param_groups[0]["lr"]
    log.write(epoch=epoch, loss=loss, val_loss=val_loss, val_empty_map_loss=empty,
              val_pck=acc, lr=lr, dpg=run.use_dpg(epoch), img_per_s=run.last_rate, **poses)
    run.say("epoch %d/%d  loss %.6f  val loss %.6f (empty maps %.6f)  val PCK %.3f  ADD < 0.1 d "
            "%.1f%%  2D proj < 5 px %.1f%%  lr %.2g  dpg %s  %.1f img/s"
            % (epoch, args.epochs, loss, val_loss, empty, acc, 100 * poses["val_add_01d"],
               100 * poses["val_proj_5px"], lr, run.use_dpg(epoch), run.last_rate),
            flush=True)  # docker logs -f shows each epoch as it ends
    return best_acc


def pose_figures(run, args):
    """ADD(-S) < 0.1 d and 2D projection < 5 px on the validation frames with ground-truth
    boxes, through the PnP `eval keypoints` runs (its figures, measured while training)."""
    from pose_train.keypoints import evaluate
    if run.pose_check is None:   # read once: the crops and the model do not change
        folder = kpdata.find_prepared(args.data, args.seq, args.kptype, args.n_classes)
        ann, crops = kpdata.load_prepared(folder)
        run.pose_check = (ann, crops, kpdata.load_model_mesh(folder))
    ann, crops, mesh = run.pose_check
    eval_args = namespace("eval-keypoints", boxes="gt", input_res_h=run.cfg.input_hw[0],
                          input_res_w=run.cfg.input_hw[1])
    net = ckpt.unwrap(run.model)
    net.eval()
    try:
        rows, _ = evaluate.evaluate_frames(eval_args, ann, crops, mesh, net, run.cfg.device)
    finally:
        net.train()
    n = max(len(rows), 1)
    return {"val_add_01d": sum(r["add_ok"] for r in rows) / n,
            "val_proj_5px": sum(r["proj_ok"] for r in rows) / n,
            "val_pose_failures": sum(r["failed"] for r in rows)}


def main(args):
    nodes.from_environment(args)
    check_args(args)
    if nodes.asked(args):
        # A missing path would otherwise be seen only once every node has joined.
        check_inputs(JOBS["train-keypoints"], args)
        return nodes.launch(args, command_words(JOBS["train-keypoints"], args),
                            ddp.requested_processes(args.nproc_per_node or args.gpus))
    return ddp.run_processes(run_process, args, args.gpus)


def run_process(args):
    """One training process (the only one, or one rank of several)."""
    info = ddp.init_distributed(command=vars(args))
    ddp.share_cores(info)
    try:
        with job_folder(args.outf, claim=info.is_main):
            return train(args, info)
    finally:
        ddp.cleanup(info)


def setup(args, info):
    """The Run: data and model on this process's device, optimizer, settings."""
    device = info.device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True   # fixed input size: let cuDNN pick its kernels once
    say = print if info.is_main else (lambda *a, **k: None)
    ann, train_data, val_data = load_data(args, device, say)
    torch.manual_seed(args.seed)                # the same initial weights on every rank
    net = build_model(args, ann["kpnum"], device, say)
    optimizer = kpmodel.make_optimizer(args.opt_method, net.parameters(), args.lr)
    cfg = steps.StepConfig(device, args.train_batch, args.seed, (args.input_res_h, args.input_res_w),
                           args.hm_gauss, "off" if args.amp == "off" else "bf16", device.type == "cuda",
                           args.train_occluded, transforms.Augment(flip=args.flip), args.accumulate)
    return Run(net, optimizer, train_data, val_data, cfg, args.add_dpg, args.dpg_from_epoch,
               TimeLimit(args.time_limit), meta=weights_meta(args, ann), info=info)


def train(args, info):
    if not args.resume:
        ckpt.refuse_an_earlier_run(args.outf, ckpt.STATE_NAMES + ("best.pkl", "model_*.pkl"))
    if info.is_main:
        report_stale_temps(args.outf)
    run = setup(args, info)
    start_epoch, start_step, best_acc = resume(args, run, args.outf)
    run.say("training: --trainBatch %d a step over %d process(es)%s, %s" % (
        args.train_batch, info.world_size, " x %d accumulated batches" % args.accumulate
        if args.accumulate > 1 else "", info.device))
    run.model = ddp.wrap_model(run.model, info, args.compile)
    loop = EpochLoop(continue_line(JOBS["train-keypoints"], args), args, info, run.time_limit,
                     STATE_NAME, "--resume")
    # What the epochs hand on: the rate schedule (a new one with DPG's fresh optimizer), the
    # best validation PCK so far, each epoch's loss until its end is logged.
    track = {"best": best_acc, "losses": {}, "schedule": kpmodel.make_scheduler(
        run.optimizer, args.lr, args.lr_schedule, args.epochs, start_epoch - 1)}

    def one_epoch(epoch, first_step):
        if run.dpg_starts(epoch) and first_step == 0:
            switch_to_dpg(run, args, args.outf)
            track["schedule"] = kpmodel.make_scheduler(run.optimizer, args.lr, args.lr_schedule,
                                                       args.epochs, epoch - 1)
        elif epoch > start_epoch:
            track["schedule"].step()
        result = steps.train_epoch(run.model, run.optimizer, run.train_data, run.cfg, epoch, first_step,
                                   loop.should_stop, loop.log, run.info, run.use_dpg(epoch), args.epochs,
                                   run.epoch_loss)
        track["losses"][epoch] = result.loss_mean
        if result.status == "stopped":
            run.epoch_loss = (result.loss_sum, result.loss_steps)
            return result.next_step
        run.last_rate = result.samples / result.seconds
        return None

    def finish(epoch):
        track["best"] = end_epoch(run, args, args.outf, epoch, track["losses"].pop(epoch),
                                  loop.log, track["best"])

    def save(epoch, step):
        save_state(run, args, args.outf, epoch, step, track["best"])

    epochs = [(e, start_step if e == start_epoch else 0) for e in range(start_epoch, args.epochs + 1)]
    if not loop.run(epochs, one_epoch, finish, save):
        return 0
    if info.is_main:
        save_weights(run, os.path.join(args.outf, "final.pkl"), epoch=args.epochs)
    run.say("done: best validation PCK %.3f; weights in %s" % (max(track["best"], 0.0), args.outf))
    return 0
