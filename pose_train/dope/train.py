"""`pose-train train dope`: train DOPE on one object class.

Reads top to bottom: devices/processes -> data -> network and where it starts from -> loader ->
epochs (weights + training state after each) -> stop on signal / time limit with a resumable
state. Epoch numbering: a fresh run trains epochs 1..N; ``--net net_epoch_10.pth`` trains
11..10+N (the seed's Kaggle workflow); a training state continues the run it came from, whose
last epoch is its first epoch + N - 1, so the same command resumes idempotently.
"""
import functools
import os
import sys

import numpy as np
import torch

from pose_train import environment
from pose_train.dope.network import DopeNetwork
from pose_train.dope import weights_files as ckpt
from pose_train.dope.augment import NORMALIZATIONS
from pose_train.dope.data import dimensions_of, scan
from pose_train.dope.steps import StepConfig, train_one_epoch
from pose_train.dope.loader import (DopeDataset, EpochBatches, decoded_cache, default_workers,
                                    device_warp_pays, make_loader)
from pose_train.dope import heldout_overlays, recipes, start, validation
from pose_train.dope.folding import deployable
from pose_train.dope.embedded import cached_dataset
from pose_train.errors import UserError
from pose_train.files import job_folder, report_stale_temps
from pose_train.jobs import JOBS, check_inputs, command_words, continue_line
from pose_train.training import checkpoint_io as state_io
from pose_train.training import distributed as ddp
from pose_train.training import nodes
from pose_train.training.loop import EpochLoop
from pose_train.training.metrics_log import read_metrics, rewind
from pose_train.training.signals import TimeLimit
from pose_train_py27 import sidecar

DEFAULT_SIGMA_PX = 4.0   # input pixels = 0.5 output pixels at stride 8, DOPE's value
RECIPE = {"epochs": 30, "imagesize": 400, "batchsize": 32, "synth_n": 200}
# No --data and no GPU: the first run a user tries, sized to end within 10 minutes on 2 cores
# (the fast recipe: ~0.4 s a step at 128 px, batch 8, on 2 cores; docs/measured.md has the
# measured time). The object sits close enough to span 8-12 belief cells at 128 px crops of 192x144
# frames (fx 173 px: 72-108 px).
CPU_FIRST_RUN = {"epochs": 10, "imagesize": 128, "batchsize": 8, "synth_n": 400}
FIRST_RUN_FRAMES = {"width": 192, "height": 144, "distance": (0.16, 0.24)}


def main(args):
    """Job entry; the flags are declared in pose_train.jobs.dope."""
    nodes.from_environment(args)
    if nodes.asked(args):
        # A missing path would otherwise be seen only once every node has joined.
        check_inputs(JOBS["train-dope"], args)
        return nodes.launch(args, command_words(JOBS["train-dope"], args),
                            ddp.requested_processes(args.nproc_per_node or args.gpus))
    return ddp.run_processes(_run, args, args.gpus)


def _run(args):
    info = ddp.init_distributed(command=vars(args))
    ddp.share_cores(info)
    try:
        with job_folder(args.outf, claim=info.is_main):
            if info.is_main:
                report_stale_temps(args.outf)
            return _train(args, info)
    finally:
        ddp.cleanup(info)


def _train(args, info):
    say = print if info.is_main else (lambda *a, **k: None)
    defaulted = _size_the_run(args, info, say)
    torch.manual_seed(args.seed)     # same --seed, same initial weights on every rank
    model = DopeNetwork()
    # --net / --resume first: a file that is not weights is named before --outf gets a report.
    start_epoch, start_step, first_epoch, state, given = start.starting_point(args, model, say,
                                                                               defaulted)
    recipe = start.recipe_of(args)      # a resumed run's own unless --recipe says otherwise
    model = start.training_net(recipe, model, state, given, say)
    if recipe.stages and args.net and state is None:
        say("note: --recipe %s trains stage 1 of %s; stages 2-6 are saved as pass-throughs of its "
            "maps (--recipe dope trains all six)" % (recipe.name, args.net))
    samples = _scan(args, info, say)
    samples, held_out = _split(args, info, samples, say)
    if info.is_main:
        rewind(os.path.join(args.outf, "metrics.jsonl"), None if state is None else (start_epoch, start_step))
    end_epoch = first_epoch + args.epochs - 1
    if start_epoch > end_epoch:
        say("nothing to train: the run already reached epoch %d (its last, --epochs %d from "
            "epoch %d)" % (end_epoch, args.epochs, first_epoch))
        return 0
    cfg = _step_config(args, info, recipe)
    net, optimizer, scaler = _build(args, info, cfg, model, state, recipe)
    dataset, device_warp = _dataset(args, info, cfg, samples, say, recipe)
    say("training %r: %d images, epochs %d..%d, %s" % (args.object, len(samples), start_epoch,
                                                         end_epoch, _how(args, info, cfg, device_warp)))
    if args.save and info.is_main:
        _save_previews(args, dataset, cfg, say)
    sampler, loader = _loader(args, info, cfg, dataset)
    schedule = recipes.Schedule(recipe, args.lr, cfg.sigma, first_epoch, end_epoch, sampler.steps())
    meta = _run_meta(args, first_epoch, cfg, samples + held_out)
    loop = EpochLoop(continue_line(JOBS["train-dope"], args), args, info, TimeLimit(args.time_limit),
                     state_io.STATE_NAME, "--net")
    watch = _watch(args, info, cfg, meta, held_out, loop, say)

    def one_epoch(epoch, first_step):
        # Same order as an uninterrupted run; a resumed epoch skips the batches it did.
        sampler.set_epoch(epoch, skip=first_step)
        result = train_one_epoch(net, optimizer, scaler, loader, cfg, epoch, first_step,
                                 loop.should_stop, loop.log, info, show_progress=info.is_main,
                                 steps_after=(end_epoch - epoch) * sampler.steps(),
                                 every=_every_steps(args, watch, loop, model, epoch,
                                                    sampler.steps()),
                                 carried=state_io.epoch_loss(state) if first_step else (0.0, 0),
                                 schedule=schedule)
        results[epoch] = result
        if result.status == "stopped":
            _log_epoch(loop.log, epoch, result, info)
        return result.next_step if result.status == "stopped" else None

    def finish(epoch):
        plain = _saved_network(model, cfg)    # what the node loads: folded, DOPE's keys
        path = ckpt.save_epoch_weights(args.outf, plain, epoch, meta)
        ckpt.prune_epochs(args.outf, epoch, first_epoch, args.keep_epochs)
        r = results.pop(epoch)
        say(_epoch_line(epoch, r, path))
        figures = _epoch_figures(args, watch, loop, plain, (epoch, end_epoch), r.seconds, meta,
                                 path, say)
        _log_epoch(loop.log, epoch, r, info, **figures)

    def save_state(epoch, step):
        _save_state(args, model, optimizer, scaler, epoch, step, meta, results.get(epoch))

    results = {}
    epochs = [(e, start_step if e == start_epoch else 0) for e in range(start_epoch, end_epoch + 1)]
    if not loop.run(epochs, one_epoch, finish, save_state):
        return 0
    _done(args, watch, start_epoch, end_epoch, say, held_out, cfg)
    return 0


def _epoch_figures(args, watch, loop, plain, epochs, seconds, meta, path, say):
    """The epoch's validation, and net_best.pth when it is better. Skipped when a stop was
    asked during the epoch and epochs were left: the state's save comes first (a scheduler's
    grace may be short)."""
    epoch, last = epochs
    if loop.stopping and epoch < last:
        say("validation of epoch %d skipped: stopping (%s); `eval dope %s` scores it"
            % (epoch, loop.stop.reason or "another process", path))
        return {}
    return watch.epoch_end(plain, epoch, seconds, lambda f: ckpt.save_weights(
        os.path.join(args.outf, ckpt.BEST_NAME), plain, dict(meta, epoch=epoch, val=f)))


def _how(args, info, cfg, device_warp):
    amp = "amp " + str(cfg.amp_dtype).replace("torch.", "") if cfg.amp_dtype else "fp32"
    accumulated = " x %d accumulated" % args.accumulate if args.accumulate > 1 else ""
    return "recipe %s, lr %g, batch %d x %d process(es)%s, %s, %s, crops cut on the %s" % (
        args.recipe, args.lr, args.batchsize, info.world_size, accumulated, cfg.device, amp,
        "GPU" if device_warp else "CPU (loader workers)")


def _loader(args, info, cfg, dataset):
    """(the sampler every rank shares the order of, the loader over it)."""
    sampler = EpochBatches([ddp.make_sampler(dataset, info, shuffle=True, seed=args.seed,
                                             accumulate=args.accumulate, micro=j)
                            for j in range(args.accumulate)], args.batchsize)
    step = args.batchsize * info.world_size * args.accumulate
    if step > len(dataset) and info.is_main:
        print("pose-train: warning: a step takes %d images (--batchsize x processes x "
              "--accumulate) but %d are training: frames repeat within a step; lower "
              "--accumulate or --batchsize" % (step, len(dataset)), file=sys.stderr, flush=True)
    workers = default_workers(info.world_size) if args.workers is None else args.workers
    return sampler, make_loader(dataset, sampler, args.batchsize, workers,
                                pin_memory=cfg.device.type == "cuda")


def _done(args, watch, start_epoch, end_epoch, say, held_out, cfg):
    say("done: epochs %d..%d in %s" % (start_epoch, end_epoch, args.outf))
    best = os.path.join(args.outf, ckpt.BEST_NAME)
    if watch.best:
        say("best on the %d held-out frames: %s\n  -> %s (point infer, eval, export and convert "
            "at it)" % (watch.best["val_frames"], validation.describe(watch.best), best))
    if watch.best and os.path.isfile(best):
        paths = heldout_overlays.write(best, held_out, args.outf, cfg.device)
        if paths:
            say("what it finds in %d held-out frames: %s (cuboids as the node decodes them, "
                "white circles: the belief peaks it found, green circles: the annotated "
                "keypoints)" % (len(paths), os.path.dirname(paths[0])))


def _size_the_run(args, info, say):
    """Fill the size flags not given: the seed's recipe, or without --data and without a GPU
    a first run that ends in minutes. Explicit flags always win. Returns the flags filled."""
    args.first_run = not args.data and info.device.type != "cuda"
    sizes = CPU_FIRST_RUN if args.first_run else RECIPE
    unset = [k for k in sizes if getattr(args, k) is None and not (k == "synth_n" and args.data)]
    for key in unset:
        setattr(args, key, sizes[key])
    if args.first_run and unset:
        say("no --data and no GPU: a first run sized for a CPU (%s; under 10 minutes on 2 "
            "cores). The seed's recipe, for a GPU: --epochs 30 --imagesize 400 --batchsize 32 "
            "--synth_n 200" % " ".join("--%s %s" % (k, getattr(args, k)) for k in unset))
    return unset


def _split(args, info, samples, say):
    """(training frames, held-out frames): --val, or a seeded slice of --data (never trained)."""
    if list(args.val) == ["off"]:
        say("validation off (--val off): every frame trains, no net_best.pth")
        return samples, []
    given = None
    if args.val:
        given, report = validation.scan_val(args.val, args.object, args.imagesize, args.strict,
                                            functools.partial(scan, max_pixels=args.max_pixels))
        if info.is_main:
            say("--val: " + report.summary(len(given)))
    train, held_out = validation.split(samples, args, say, info.is_main, given)
    if not held_out:
        say("validation off: %d frame(s) are too few to hold any out; pass --val DIR"
            % len(samples))
    elif given is None:
        say("validation: %d of %d frames held out, never trained on (list: %s)"
            % (len(held_out), len(samples), os.path.join(args.outf, validation.SPLIT_FILE)))
    if not train:
        raise UserError("%s: no frames left to train on; pass more --data" % args.outf)
    return train, held_out


def _watch(args, info, cfg, meta, held_out, loop, say):
    validator = None
    if info.is_main and held_out:
        validator = validation.Validator(held_out, cfg, meta, args.batchsize)
    path = os.path.join(args.outf, "metrics.jsonl")
    history = read_metrics(path) if info.is_main and os.path.isfile(path) else []
    return validation.Watch(validator, args.outf, say, loop.time_limit,
                            [r for r in history if r.get("kind") == "epoch"])


def _every_steps(args, watch, loop, model, epoch, last_step):
    """--val_every N: (N, callback) for the step loop; the figures go to metrics as kind val.
    The epoch's last step is left to the epoch's own validation (the same weights)."""
    if not args.val_every or not watch.validator:
        return None

    def check(step):
        if step == last_step:
            return
        figures = watch.figures(_saved_network(model, watch.validator.cfg),
                                "epoch %d step %d" % (epoch, step))
        if figures:
            loop.log.write(kind="val", epoch=epoch, step=step, **figures)
    return args.val_every, check


def _dataset(args, info, cfg, samples, say, recipe):
    """The training frames as crops: cut on the GPU when whole frames can be batched there."""
    device_warp = cfg.device.type == "cuda" and device_warp_pays(samples, args.imagesize)
    return DopeDataset(samples, args.imagesize, seed=args.seed, train=True, geometry=recipe.geometry,
                       cache=_decode_cache(args, samples, info, say),
                       device_warp=device_warp), device_warp


def _scan(args, info, say):
    """Index the data; rank 0 writes the report (every rank scans: it reads headers only)."""
    samples, report = scan(_data_roots(args, info, say), args.object, args.imagesize,
                           strict=args.strict, max_pixels=args.max_pixels,
                           report_to=os.path.join(args.outf, "data_report.txt") if info.is_main else None)
    if info.is_main:
        report_path = report.write(os.path.join(args.outf, "data_report.txt"), len(samples))
        say(report.summary(len(samples)) + " (details: %s)" % report_path)
    return samples


def _build(args, info, cfg, model, state, recipe):
    """Device placement, the recipe's optimizer, AMP scaler, restored state, DDP/compile."""
    model.to(cfg.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = recipe.make_optimizer(model.parameters(), args.lr)
    scaler = torch.amp.GradScaler(cfg.device.type, enabled=cfg.amp_dtype == torch.float16)
    if state is not None:
        state_io.restore_state(state, model, optimizer, scaler)
        for group in optimizer.param_groups:
            group["lr"] = args.lr        # --lr given now wins over the saved one
    return ddp.wrap_model(model, info, args.compile), optimizer, scaler


def _log_epoch(log, epoch, result, info, **figures):
    log.write(kind="epoch", epoch=epoch, status=result.status, loss_mean=result.loss_mean,
              samples=result.samples, seconds=round(result.seconds, 3),
              img_per_s=round(result.samples / max(result.seconds, 1e-9), 2),
              loader_wait_fraction=round(result.loader_wait / max(result.seconds, 1e-9), 4),
              world_size=info.world_size, **figures)


def _data_roots(args, info, say):
    """--data folders, or the embedded synthetic set (rank 0 generates it once, others wait)."""
    if args.data:
        return list(args.data)
    frames = FIRST_RUN_FRAMES if args.first_run else {}
    if info.is_main:
        path, made = cached_dataset(args.outf, args.synth_n, seed=args.seed,
                                    object_name=args.object, **frames)
        say("%s synthetic dataset (%d images): %s" % ("generated" if made else "using cached",
                                                       args.synth_n, path))
    ddp.barrier(info)
    path, _ = cached_dataset(args.outf, args.synth_n, seed=args.seed, object_name=args.object,
                             **frames)
    return [path]


def _decode_cache(args, samples, info, say):
    """Decoded frames kept on disk after the first epoch (rank 0 makes the files)."""
    root = os.environ.get(environment.CACHE) or os.path.join(args.outf, ".cache")
    cache = decoded_cache(samples, root, args.decode_cache) if info.is_main else None
    if info.is_main:
        if cache is not None:
            cache.create()
            say("decoded-frame cache: %.2f GB in %s (epoch 1 decodes, later epochs read it)"
                % (cache.nbytes / 1e9, cache.path))
        elif args.decode_cache == "auto":
            say("decoded-frame cache off: not enough free disk in %s" % root)
    ddp.barrier(info)
    if not info.is_main:
        cache = decoded_cache(samples, root, args.decode_cache)
    return cache


def _saved_network(model, cfg):
    """The network as saved and validated: DOPE's plain layout (a fast run's BatchNorms
    folded in), on the training device."""
    net = state_io.unwrap(model)
    plain = deployable(net)
    return net if plain is net else plain.to(cfg.device)


def _step_config(args, info, recipe):
    cuda = info.device.type == "cuda"
    amp = {"auto": torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None,
           "bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[args.amp]
    if amp == torch.float16 and not cuda:
        raise UserError("--amp fp16 needs CUDA; use --amp bf16 or off on CPU")
    if cuda:
        torch.backends.cudnn.benchmark = True   # fixed crop size: autotuning pays off
    # The sigma a run ends with: validation's targets, and what the sidecar records.
    sigma_px = DEFAULT_SIGMA_PX if args.sigma is None else args.sigma
    if recipe.sigma_cells:
        sigma_px = recipe.sigma_cells[-1] * 8.0
    return StepConfig(device=info.device, sigma=sigma_px / 8.0, amp_dtype=amp,
                      channels_last=cuda, seed=args.seed, rank=info.rank, accumulate=args.accumulate,
                      crop_size=args.imagesize, normalization=NORMALIZATIONS[args.normalize],
                      foreground_weight=recipe.foreground_weight)


def _run_meta(args, first_epoch, cfg, samples):
    """Plain data stored in the training state and the weights' json sidecar; convert makes
    the ROS node's config from it (dimensions in cm, the frame size behind downscale_height)."""
    config = {k: v for k, v in vars(args).items()}
    config["first_epoch"] = first_epoch
    dims = dimensions_of(samples)
    sizes = np.array([s.size for s in samples], np.float64)
    return sidecar.dope_meta(args.object, args.imagesize, cfg.normalization, cfg.sigma,
                             None if dims is None else [round(100.0 * v, 4) for v in dims],
                             np.median(sizes, axis=0), config)


def _epoch_line(epoch, r, path):
    return ("epoch %d: loss %.6f, %.1f img/s, %.0f%% of the time waiting for data -> %s"
            % (epoch, r.loss_mean, r.samples / max(r.seconds, 1e-9),
               100.0 * r.loader_wait / max(r.seconds, 1e-9), path))


def _save_state(args, model, optimizer, scaler, epoch, step, meta, partial=None):
    """partial: the EpochResult of a stopped epoch (its loss so far goes into the state)."""
    state_io.save_state(os.path.join(args.outf, state_io.STATE_NAME), model, optimizer,
                        epoch=epoch, step=step, config=meta["config"], scaler=scaler,
                        extra={"normalization": meta["normalization"],
                               "imagesize": args.imagesize, "object": meta["object"]},
                        epoch_loss=partial and (partial.loss_sum, partial.loss_steps))


def _save_previews(args, dataset, cfg, say):
    from pose_train.dope.validate import write_previews
    paths = write_previews(dataset, cfg, args.outf, prefix="train_batch")
    say("--save: wrote %s" % ", ".join(paths))
