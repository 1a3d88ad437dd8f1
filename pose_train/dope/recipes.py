"""How `train dope` trains: a registry of recipes (``--recipe``).

Both recipes train the same six-stage DopeNetwork and save the same weights; they differ in
how they get there.

``dope``: DOPE's own recipe as its trainer runs it: Adam at a constant 1e-4, belief Gaussians
  of sigma 0.5 map cells, the sum of the six stages' MSE, no normalisation layers, crops scaled
  0.8-1.25, rotated up to 20 degrees, shifted up to a quarter of the crop.

``fast``: the same network, trained so it learns within an hour on a CPU: stage 1 trains and
  stages 2-6 are saved as exact pass-throughs of its maps; from a random trunk, the trunk's
  convolutions between layers of one width are left out and saved as identities (a step then
  costs about a sixth of DOPE's); a BatchNorm after every hidden convolution (folded into the
  convolutions when saved, pose_train.dope.folding); AdamW at 1e-3 after a short linear
  warm-up with a cosine decay to 2% over the run; belief Gaussians wider at the start (1.5
  cells, to 1 cell at the end); each squared error weighted by 1 + 9 x the target, so the
  peaks count against a map of zeros; milder crops that keep the object whole more often.
"""
import math
from dataclasses import dataclass, field

import torch

from pose_train.dope.augment import GeometryParams
from pose_train.dope.folding import SKIPPABLE
from pose_train.errors import UserError


@dataclass(frozen=True)
class Recipe:
    name: str
    lr: float                       # the --lr default
    optimizer: str                  # "adam" | "adamw"
    weight_decay: float = 0.0
    normalize_layers: bool = False  # train with BatchNorm, folded when saved
    stages: int = None              # stages trained (None: all six); later ones pass through
    skip: tuple = ()                # trunk convolutions left out (folding.SKIPPABLE)
    warmup: float = 0.0             # fraction of the run's steps
    final_lr: float = 1.0           # fraction of the peak at the run's last step (cosine)
    sigma_cells: tuple = None       # (start, end) belief sigma in map cells; None: --sigma
    foreground_weight: float = 1.0  # steps.dope_loss
    geometry: GeometryParams = field(default_factory=GeometryParams)

    def make_optimizer(self, params, lr):
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=lr)

    def lr_factor(self, t):
        """Learning-rate multiplier at ``t`` in [0, 1), the fraction of the run's steps done."""
        if self.warmup and t < self.warmup:
            return (t + 1e-3) / self.warmup
        if self.final_lr >= 1.0:
            return 1.0
        span = (t - self.warmup) / max(1e-9, 1.0 - self.warmup)
        return self.final_lr + (1.0 - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, span)))

    def sigma_cells_at(self, t, default):
        if not self.sigma_cells:
            return default
        start, end = self.sigma_cells
        return start + (end - start) * min(1.0, t)


RECIPES = {
    "dope": Recipe("dope", lr=1e-4, optimizer="adam"),
    "fast": Recipe("fast", lr=1e-3, optimizer="adamw", weight_decay=1e-4, normalize_layers=True,
                   stages=1, skip=SKIPPABLE, foreground_weight=10.0, warmup=0.03, final_lr=0.02, sigma_cells=(1.5, 1.0),
                   geometry=GeometryParams(scale_range=(0.9, 1.1), max_rotation_deg=15.0,
                                           max_shift=0.1)),
}
DEFAULT = "fast"


def get(name):
    if name not in RECIPES:
        raise UserError("--recipe %s: no such recipe; choose %s" % (name, " or ".join(sorted(RECIPES))))
    return RECIPES[name]


class Schedule:
    """Sets the learning rate and gives the belief sigma for each optimizer step of a run,
    from its place in the run (so a resumed run follows the uninterrupted one exactly)."""

    def __init__(self, recipe, lr, sigma_cells, first_epoch, end_epoch, steps_per_epoch):
        self.recipe, self.lr, self.sigma = recipe, lr, sigma_cells
        self.first_epoch, self.steps_per_epoch = first_epoch, max(1, steps_per_epoch)
        self.total = (end_epoch - first_epoch + 1) * self.steps_per_epoch

    def fraction(self, epoch, step):
        done = (epoch - self.first_epoch) * self.steps_per_epoch + step
        return min(max(done, 0) / float(max(1, self.total)), 1.0)

    def before_step(self, optimizer, epoch, step):
        """Sets the step's learning rate; returns its belief sigma in map cells."""
        t = self.fraction(epoch, step)
        for group in optimizer.param_groups:
            group["lr"] = self.lr * self.recipe.lr_factor(t)
        return self.recipe.sigma_cells_at(t, self.sigma)
