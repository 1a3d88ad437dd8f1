"""Where a `train dope` run starts: its recipe, and the weights or training state it continues.

A fresh run starts from random weights (or ImageNet's trunk); ``--net`` of weights continues
their training as a new run (numbering from the file's epoch); a training state, given as
``--net`` or found by ``--resume auto``, continues its run exactly, and is refused when the
flags that decide what it computes differ (the object, the normalisation, the recipe, the
crop size and sigma).
"""
import dataclasses

from pose_train import pretrained
from pose_train.dope import recipes
from pose_train.dope.folding import normalized
from pose_train.dope import weights_files as ckpt
from pose_train.errors import UserError
from pose_train.files import read_sidecar
from pose_train.training import checkpoint_io as state_io


# Flags the validation figures depend on: net_best.pth compares val_loss across epochs, so
# one run measures them at one crop size and one target sigma.
SAME_FIGURES = ("imagesize", "sigma")


def starting_point(args, model, say, defaulted=()):
    """(start_epoch, start_step, first_epoch_of_run, state or None, whether ``model`` holds
    weights from a file now) from --net / --resume / --pretrained. ``defaulted``: the size
    flags filled by default, which a resumed run takes from its state instead."""
    path = args.net
    if path is None and args.resume == "auto":
        path = state_io.find_latest_state(args.outf)
        if path is None:
            say("--resume auto: no %s in %s yet; starting a new run" % (state_io.STATE_NAME,
                                                                       args.outf))
    if path is None:
        if args.resume is None:
            state_io.refuse_an_earlier_run(args.outf, state_io.STATE_NAMES + ("net_*.pth",))
        weights = pretrained.resolve(args.pretrained, "vgg19", say,
                                     random_ok=bool(recipes.get(args.recipe or recipes.DEFAULT).skip))
        if weights:
            ckpt.load_pretrained_vgg(model, weights)
            say("VGG-19 conv1_1..conv4_2 initialised from %s" % weights)
        return 1, 0, 1, None, bool(weights)
    if args.pretrained not in (None, "none"):
        say("note: --pretrained is ignored when continuing from %s" % path)
    obj = state_io.load_file(path)
    if state_io.is_state(obj):
        state = state_io.load_state(path)
        saved = state["config"]
        if str(saved.get("object", "")).lower() != args.object.lower():
            raise UserError("%s trained object %r, not %r; pass the matching --object or a new "
                            "--outf" % (path, saved.get("object"), args.object))
        same_normalization(path, state["extra"].get("normalization"), args)
        _same_recipe(path, saved.get("recipe") or "dope", args)
        _same_figures(path, saved, args, defaulted, say)
        state_io.same_steps_mid_epoch(path, state, args, {"batchsize": "--batchsize",
                                                          "accumulate": "--accumulate"})
        say("resuming %s: epoch %d step %d" % (path, state["epoch"], state["step"]))
        return state["epoch"], state["step"], int(saved["first_epoch"]), state, False
    sidecar = read_sidecar(path)
    trained = sidecar.get("normalization")
    same_normalization(path, trained, args)
    if trained is None:
        say("note: %s has no json sidecar naming its input normalisation; training goes on with "
            "--normalize %s (DOPE's own trainer used imagenet: pass --normalize imagenet to "
            "continue its weights)" % (path, args.normalize))
    ckpt.load_weights_into(model, path, obj)
    # net_best.pth has no number in its name; its sidecar says which epoch it holds.
    by_name = ckpt.epoch_from_name(path)
    done = by_name if by_name is not None else int(sidecar.get("epoch") or 0)
    say("initial weights %s (epoch %d by its %s); training continues at epoch %d"
        % (path, done, "name" if by_name is not None else "sidecar", done + 1))
    return done + 1, 0, done + 1, None, True


def same_normalization(path, trained, args):
    """Continuing with another input normalisation would quietly unlearn the first one."""
    name = (trained or {}).get("name")
    if name and name != args.normalize:
        raise UserError("%s was trained with --normalize %s; continue it with --normalize %s "
                        "(or start a new --outf)" % (path, name, name))


def _same_figures(path, saved, args, defaulted, say):
    """A resumed run keeps its crop size and sigma: flags left out take the state's values;
    other values given are refused (validation losses at two crop sizes do not compare)."""
    for key in SAME_FIGURES:
        if key not in saved:
            continue
        was, now = saved[key], getattr(args, key)
        if now == was:
            continue
        if now is None or key in defaulted:
            setattr(args, key, was)
            say("--resume: --%s %s, as %s was started" % (key, was, path))
            continue
        raise UserError("%s was trained with --%s %s, not %s (its validation figures and "
                        "net_best.pth compare at one value): continue it with --%s %s, or start "
                        "a new --outf with --net and one of its net_epoch_*.pth"
                        % (path, key, "default" if was is None else was, now, key,
                           "left out" if was is None else was))


def recipe_of(args):
    """The --recipe, with --lr and --sigma filled or overriding it (said once)."""
    if args.recipe is None:
        args.recipe = recipes.DEFAULT
    recipe = recipes.get(args.recipe)
    if args.lr is None:
        args.lr = recipe.lr
    if args.sigma is not None and recipe.sigma_cells:
        recipe = dataclasses.replace(recipe, sigma_cells=None)   # --sigma: one sigma throughout
    return recipe


def _same_recipe(path, trained, args):
    """A state holds the recipe's network (BatchNorm or not) and optimizer: one recipe a run."""
    if args.recipe is None:
        args.recipe = trained
    elif trained != args.recipe:
        raise UserError("%s was trained with --recipe %s; continue it with --recipe %s, or start "
                        "a new --outf with --net and one of its net_epoch_*.pth to train its "
                        "weights on with --recipe %s" % (path, trained, trained, args.recipe))


def training_net(recipe, model, state, weights_given, say):
    """The module that trains. A fast run from a random trunk leaves out the trunk
    convolutions the recipe skips; one from weights (ImageNet's, --net) keeps every layer it
    was given, and a training state keeps the layers it was saved with."""
    if not recipe.normalize_layers:
        return model
    keep = weights_given or (state is not None and any(k.startswith("vgg.%d." % recipe.skip[0])
                                                         for k in state["model"]))
    if recipe.skip and weights_given:
        say("note: --recipe %s keeps every trunk layer of the weights it starts from (from a "
            "random trunk it trains %d fewer)" % (recipe.name, len(recipe.skip)))
    return normalized(model, recipe.stages, () if keep else recipe.skip)
