"""The objectives that share SimCLR's data, views, network and training run: SimCLR, MoCo, SimSiam, ...

    cfg = replace(PRESETS["smoke"], method=Method("moco", queue_size=4096), batch_size=64)
    history = train_simclr(build_model(cfg), images, cfg)      # the same trainer for every method

A `Learner` holds the model and what its method adds (MoCo's key encoder and queue, SimSiam's
predictor), so one checkpoint saves all of it and a resumed run continues exactly. `Learner.loss(v1, v2)`
takes the two views of a batch (B, 3, S, S) and returns the method's loss:

    simclr     NT-Xent over the 2B views (Chen et al., ICML 2020)
    moco       InfoNCE of each view's query against the other view's key and a queue of past keys, from
               an EMA key encoder, symmetric (He et al., CVPR 2020; Chen et al., 2020, MoCo v2)
    simsiam    negative cosine of a predictor's output against the other view's stopped projection
               (Chen & He, CVPR 2021)
    alignment  the alignment term alone, ||z1 - z2||^2: a loss whose minimum is collapse, for the demonstration
    imix       i-Mix (Lee et al., ICLR 2021): first views mixed in pairs (Mixup or CutMix, or not at all),
               each against the clean second views, with soft targets; mix="none" is one-directional InfoNCE
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from course_lib.contrastive.collapse import Predictor, simsiam_loss
from course_lib.contrastive.losses import alignment, info_nce, nt_xent, validate_temperature
from course_lib.contrastive.mixing import draw_mix, imix_loss, mix_images
from course_lib.contrastive.moco import KeyQueue, moco_loss, momentum_update, validate_momentum
from course_lib.contrastive.across_ranks import nt_xent_across_ranks
from course_lib.distributed import world

METHODS = ("simclr", "moco", "simsiam", "alignment", "imix")
TITLES = {"simclr": "SimCLR", "moco": "MoCo", "simsiam": "SimSiam", "alignment": "alignment only", "imix": "i-Mix"}
MIXES = ("none", "mixup", "cutmix")


@dataclass(frozen=True)
class Method:
    """The objective of a run and its own hyperparameters (each used by one method only)."""

    name: str = "simclr"          # one of METHODS
    queue_size: int = 4096        # moco: negatives kept, a multiple of 2 x batch_size (both views' keys)
    key_momentum: float = 0.99    # moco: the EMA's m (MoCo: 0.999 over 200 ImageNet epochs; the short runs here 0.99)
    pred_hidden: int = 0          # simsiam: the predictor's hidden units (0: proj_dim // 4, the paper's ratio)
    mix: str = "none"             # imix: "none", "mixup" or "cutmix"
    mix_alpha: float = 1.0        # imix: the mixing weight lam ~ Beta(alpha, alpha)

    def __post_init__(self):
        if self.name not in METHODS:
            raise ValueError(f"unknown method {self.name!r}; expected one of {', '.join(METHODS)}.")
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}, got {self.mix!r}.")
        if self.mix != "none" and self.name != "imix":
            raise ValueError(f"mix={self.mix!r} needs the i-Mix objective: Method('imix', mix={self.mix!r}).")
        validate_momentum(self.key_momentum)
        if self.queue_size < 1 or self.pred_hidden < 0 or not self.mix_alpha > 0:
            raise ValueError(f"queue_size must be >= 1, pred_hidden >= 0 and mix_alpha > 0, got {self.queue_size}, "
                             f"{self.pred_hidden}, {self.mix_alpha}.")


class Learner(nn.Module):
    """A model (encoder + head, `SimCLRModel`) and what `method` adds to it, trained by one loss.

    model: x (B, 3, S, S) -> (h, z). temperature: for simclr, moco, imix. batch_size: images per step
    (MoCo's queue takes 2 x batch_size keys a step). amp: bfloat16 autocast for the forward passes on CUDA.
    """

    def __init__(self, model: nn.Module, method: Method = Method(), temperature: float = 0.2, batch_size: int = 256,
                 amp: bool = True, generator: torch.Generator | None = None):
        super().__init__()
        self.model, self.method, self.amp = model, method, amp
        self.temperature = validate_temperature(temperature)
        dim = model.head.out_dim
        if method.name == "moco":
            self.key_model = copy.deepcopy(model).requires_grad_(False)
            self.queue = KeyQueue(method.queue_size, dim, 2 * batch_size, generator)
        if method.name == "simsiam":
            self.predictor = Predictor(dim, method.pred_hidden or max(1, dim // 4))

    def _z(self, forward, x: torch.Tensor) -> torch.Tensor:
        """Projections (B, D) in float32: the forward pass runs in bfloat16 on CUDA, the loss in float32."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda" and self.amp):
            return forward(x)[1].float()

    def loss(self, v1: torch.Tensor, v2: torch.Tensor, forward=None, generator: torch.Generator | None = None
             ) -> torch.Tensor:
        """The method's loss on a batch of positive pairs v1, v2 (B, 3, S, S). `forward`: the model to call
        (e.g. a compiled one; default self.model). `generator`: the mixing draws (imix)."""
        forward = forward or self.model
        name = self.method.name
        if name == "moco":
            return self._moco(v1, v2, forward)
        if name == "imix":
            return self._imix(v1, v2, forward, generator)
        z = self._z(forward, torch.cat([v1, v2]))                           # (2B, D)
        if name == "simclr" and world()[1] > 1:   # negatives from every rank (course_lib.distributed)
            return nt_xent_across_ranks(*z.chunk(2), self.temperature)
        if name == "simclr":
            return nt_xent(z, self.temperature, impl="auto" if z.is_cuda else "torch")
        z1, z2 = z.chunk(2)
        if name == "alignment":
            return alignment(z1, z2)
        return simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2)

    def _moco(self, v1: torch.Tensor, v2: torch.Tensor, forward) -> torch.Tensor:
        momentum_update(self.key_model, self.model, self.method.key_momentum)   # first, as in MoCo's code
        # One forward pass per view: a query and its positive key are never normalised in the same batch, so the
        # pair cannot be matched through shared BatchNorm statistics (the leak MoCo's shuffled BN prevents).
        q1, q2 = self._z(forward, v1), self._z(forward, v2)
        with torch.no_grad():
            k1, k2 = self._z(self.key_model, v1), self._z(self.key_model, v2)
        negatives = self.queue.keys.clone()     # backward needs them after the push below overwrites the queue
        loss = (moco_loss(q1, k2, negatives, self.temperature) + moco_loss(q2, k1, negatives, self.temperature)) / 2
        self.queue.push(torch.cat([k1, k2]))
        return loss

    def _imix(self, v1: torch.Tensor, v2: torch.Tensor, forward, generator: torch.Generator | None) -> torch.Tensor:
        if self.method.mix == "none":      # lam = 1 everywhere: i-Mix's loss is then one-directional InfoNCE
            z_first, z_keys = self._z(forward, torch.cat([v1, v2])).chunk(2)
            return info_nce(z_first, z_keys, self.temperature)
        params = draw_mix(len(v1), self.method.mix, self.method.mix_alpha, v1.shape[2], v1.shape[3], generator,
                          v1.device)
        z_mixed, z_keys = self._z(forward, torch.cat([mix_images(v1, params), v2])).chunk(2)
        return imix_loss(z_mixed, z_keys, params, self.temperature)


__all__ = ["METHODS", "TITLES", "MIXES", "Method", "Learner"]
