"""Folding an input normalisation into DOPE's first convolution.

DOPE's ROS nodes feed ``x_r = (x - 0.5) / 0.5``. A network trained on ``x_t = (x - m) / s``
sees the same pixel when its first convolution is rewritten for ``x_r``: since
``x_t = (0.5 / s) * x_r + (0.5 - m) / s``, scale each input channel's weights by ``0.5 / s`` and
add the constant term's response to the bias. Inside the image this is exact. At the border
it is not: the convolution pads with zeros, which mean the pixel value ``m`` to the trained
network but 0.5 to the folded one. ``border_effect`` measures what that costs on an input.
"""
import torch

from pose_train.errors import UserError

FIRST_CONV = "vgg.0"
ROS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def fold(state, trained, fed=ROS, prefix="module."):
    """``state`` (DOPE, keys with ``prefix``) rewritten to take ``fed`` instead of ``trained``."""
    wkey, bkey = prefix + FIRST_CONV + ".weight", prefix + FIRST_CONV + ".bias"
    if wkey not in state or bkey not in state:
        raise UserError("no %s in the weights: only DOPE's first convolution can be folded"
                        % (FIRST_CONV,))
    m, s = (torch.tensor(trained[k], dtype=torch.float64) for k in ("mean", "std"))
    fm, fs = (torch.tensor(fed[k], dtype=torch.float64) for k in ("mean", "std"))
    scale, shift = fs / s, (fm - m) / s          # x_t = scale * x_fed + shift, per channel
    weight = state[wkey].double()
    out = state.copy()
    out[wkey] = (weight * scale.view(1, 3, 1, 1)).to(state[wkey].dtype)
    out[bkey] = (state[bkey].double() + (weight * shift.view(1, 3, 1, 1)).sum((1, 2, 3))).to(
        state[bkey].dtype)
    return out


def normalize(image, norm):
    m = torch.tensor(norm["mean"]).view(1, 3, 1, 1)
    s = torch.tensor(norm["std"]).view(1, 3, 1, 1)
    return (image - m) / s


def fold_dope(state, trained, size=256, seed=0):
    """fold() plus its measured border effect on a smooth random image: (state, facts)."""
    from pose_train_py27.keys import strip_prefix
    from pose_train_py27.nets import DopeNetwork
    prefix = "module." if all(k.startswith("module.") for k in state) else ""
    folded = fold(state, trained, prefix=prefix)
    nets = []
    for sd in (state, folded):
        net = DopeNetwork(stages=1).eval()     # the trunk is all the measurement runs
        own = net.state_dict()
        net.load_state_dict({k: v for k, v in strip_prefix(sd).items() if k in own}, strict=True)
        nets.append(net)
    gen = torch.Generator().manual_seed(seed)
    image = torch.nn.functional.interpolate(torch.rand(1, 3, size // 16, size // 16, generator=gen),
                                            size=(size, size), mode="bilinear",
                                            align_corners=False)
    diffs = border_effect(nets[0], nets[1], image, trained)
    return folded, {"folded_from": trained.get("name", "?"),
                    "fold_rel_diff": dict(("%d_px_from_edge" % (8 * m), d)
                                          for m, d in zip(MARGINS, diffs)),
                    "fold_measured_on": "%dx%d smooth random image: trunk features, max |diff| / "
                                        "max |feature|" % (size, size)}


MARGINS = (0, 2, 4, 8)     # output cells (8 px each) left out at every edge


def border_effect(net_trained, net_folded, image, trained, fed=ROS):
    """How far the folded network is from the trained one on an RGB ``image`` (1, 3, H, W) in
    [0, 1]: max |difference| of the trunk's features (what every stage reads) relative to their
    largest value, without MARGINS[i] cells at each edge."""
    with torch.no_grad():
        a = net_trained.vgg(normalize(image, trained))
        b = net_folded.vgg(normalize(image, fed))
    diff = (a - b).abs() / a.abs().max().clamp(min=1e-12)
    h, w = diff.shape[-2:]
    return [float(diff[..., m:h - m, m:w - m].max()) for m in MARGINS]
