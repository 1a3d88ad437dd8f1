"""One plain training step of DOPE, shared by the benchmark scripts (no AMP, no DDP): what the
recipe's loop does, on the trainer's own batch preparation and loss."""
from pose_train.dope.steps import forward_loss, prepare_batch


def train_step(model, optimizer, batch, cfg, epoch, step):
    """Returns (loss, final-stage beliefs, normalised images, belief targets, affinity targets)."""
    images, beliefs, affinities, _, _ = prepare_batch(batch, cfg, epoch, step)
    loss, final = forward_loss(model, images, beliefs, affinities, cfg)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, final, images, beliefs, affinities
