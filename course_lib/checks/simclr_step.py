"""Exercise `simclr_step` of notebook 03: one SimCLR optimisation step, checked against a reference step.

The reference is a few lines around the library's NT-Xent (`course_lib.contrastive.losses.nt_xent`), because
the library's step (`simclr.make_step`) also draws the views and cannot take two given batches."""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from course_lib.checks.compare import compare_outputs
from course_lib.checks.framework import Case, Exercise, check, register
from course_lib.contrastive.losses import nt_xent
from course_lib.contrastive.simclr import make_step
from course_lib.optim import LARS


# ---------------------------------------------------------------- simclr_step
# The learner writes simclr_step(encoder, head, optimizer, x1, x2, temperature) -> float. Models and
# optimizers keep state, so every case builds fresh, identically seeded copies of a tiny encoder, head and
# optimizer for the learner and for the reference, runs one step per batch, and compares the loss the
# last call returned and every parameter afterwards.

IMAGE = (3, 6, 6)  # the check's images: (3, 6, 6) floats


def tiny_models(seed: int) -> tuple[nn.Module, nn.Module]:
    """A conv encoder, images (B, 3, 6, 6) -> h (B, 8), and an MLP head, h -> z (B, 4), weights drawn from
    `seed` (the global RNG is left alone). No BatchNorm: encoding the two views in one batch or one after
    the other gives the same h, so both ways of writing the step pass."""
    with torch.random.fork_rng(devices=[]):  # the layers' default initialisation draws from the global RNG
        encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*encoder.parameters(), *head.parameters()]:
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel() if p.ndim > 1 else 4))
    return encoder, head


OPTIMIZERS = {  # name -> a fresh optimizer over the given parameters; the cases try each kind
    "sgd": lambda params: torch.optim.SGD(params, lr=0.5),
    "lars": lambda params: LARS(params, lr=0.5, momentum=0.9),
    "nesterov": lambda params: torch.optim.SGD(params, lr=0.5, momentum=0.9, nesterov=True),
}


def _parameters(encoder: nn.Module, head: nn.Module) -> torch.Tensor:
    """Every parameter of encoder and head, flattened into one (P,) float32 tensor."""
    return torch.cat([p.detach().flatten() for p in [*encoder.parameters(), *head.parameters()]])


def run_steps(step, seed: int, x1: torch.Tensor, x2: torch.Tensor, temperature: float, optimizer: str):
    """Run `step` once per batch on fresh seeded models and a fresh optimizer of kind `optimizer`.

    x1, x2: (S, N, 3, 6, 6) float32, the first and second views of S batches of N images.
    Returns (what the last call returned, the (P,) parameters after the S steps)."""
    encoder, head = tiny_models(seed)
    opt = OPTIMIZERS[optimizer]([*encoder.parameters(), *head.parameters()])
    for a, b in zip(x1, x2):
        out = step(encoder, head, opt, a, b, temperature)
    return out, _parameters(encoder, head)


def _cat(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    return torch.cat([z1, z2])  # (2N, D): rows i and i + N are the two views of image i, as nt_xent pairs them


def _interleave(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    return torch.stack([z1, z2], dim=1).flatten(0, 1)  # rows 2i and 2i + 1: a pairing nt_xent does not use


def reference_step(encoder, head, optimizer, x1, x2, temperature, pair=_cat, zero_grad=True, project=True) -> float:
    """One SimCLR step; returns the loss before it as a float. The keywords are the classic bugs the diagnosis
    tries (another pairing of the rows, no zero_grad, the loss on h instead of z); the defaults are right."""
    if len(x1) != len(x2):
        raise ValueError(f"x1 and x2 must be the two views of the same N images, got {len(x1)} and {len(x2)} rows.")
    h1, h2 = encoder(x1), encoder(x2)
    z1, z2 = (head(h1), head(h2)) if project else (h1, h2)
    loss = nt_xent(pair(z1, z2), temperature)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _step_case(steps: int, n: int, temperature: float, optimizer: str, n2: int | None = None):
    """Case inputs: a model seed, views x1 (steps, n, 3, 6, 6) and x2 (steps, n2 or n, ...), the rest."""
    def make(gen: torch.Generator) -> tuple:
        seed = int(torch.randint(2**31, (), generator=gen))
        # Pixel noise on a colour of its own per image, so that even untrained models tell the images apart
        # and the loss is far from its chance value log(2N - 1).
        x1 = torch.randn(steps, n, *IMAGE, generator=gen) + 2 * torch.randn(steps, n, 3, 1, 1, generator=gen)
        # The second view: the same images, perturbed, so the positive pairs really are alike.
        x2 = x1[:, : n2 or n] + 0.3 * torch.randn(steps, n2 or n, *IMAGE, generator=gen)
        return seed, x1, x2, temperature, optimizer
    return make


def _compare_step(got, want) -> str | None:
    (loss, params), (want_loss, want_params) = got, want
    if isinstance(loss, torch.Tensor):
        return ("returned a torch.Tensor: return the loss as a Python float, loss.item(), which is detached from the "
                "graph and can be printed, averaged and plotted as it is.")
    if isinstance(loss, bool) or not isinstance(loss, (int, float)):
        return f"returned {loss!r}, expected the loss as a Python float (loss.item())."
    if not math.isclose(loss, want_loss, rel_tol=1e-4, abs_tol=1e-5):
        return f"the returned loss is {loss:.6g}, expected {want_loss:.6g} (the loss before the step)."
    problem = compare_outputs(params, want_params, rtol=1e-4, atol=1e-6)
    return None if problem is None else f"the loss is right, but the parameters after the step are not: {problem}"


_BUGS = [  # (the reference with one bug, what to tell the learner whose step behaves like it)
    (functools.partial(reference_step, zero_grad=False),
     "Your step behaves like one without optimizer.zero_grad(): the gradients of the previous step are added to "
     "this step's, so every step after the first is wrong. Call optimizer.zero_grad() before "
     "loss.backward()."),
    (functools.partial(reference_step, pair=_interleave),
     "Your loss pairs rows 2i and 2i + 1, but nt_xent takes rows i and i + N as the two views of image i: build "
     "z = torch.cat([z1, z2]), not an interleaving (stack, then reshape)."),
    (functools.partial(reference_step, pair=lambda z1, z2: torch.cat([z1, z1])),
     "Your loss compares the first view with itself: z2 must come from x2."),
    (functools.partial(reference_step, project=False),
     "Your loss is computed on h = encoder(x): the loss is on z = head(h), so that the head, not the encoder's "
     "features, absorbs the invariances."),
]


def _diagnose_step(run_learner, gen: torch.Generator) -> str | None:
    step = run_learner.args[0]
    args = _step_case(steps=2, n=6, temperature=0.5, optimizer="sgd")(gen)
    got, params = run_steps(step, *args)
    if isinstance(got, torch.Tensor):
        got = got.item()
    for buggy, message in _BUGS:
        want, want_params = run_steps(buggy, *args)
        if math.isclose(got, want, rel_tol=1e-4) and torch.allclose(params, want_params, rtol=1e-4, atol=1e-6):
            return message
    if torch.equal(params, _parameters(*tiny_models(args[0]))):
        return ("The parameters did not move: call loss.backward(), then optimizer.step() (and zero_grad before "
                "backward, not between backward and step).")
    return None


register(Exercise(
    name="simclr_step",
    reference=functools.partial(run_steps, reference_step),
    cases=[
        Case("one step, SGD, 4 images", _step_case(1, 4, 0.5, "sgd")),
        Case("two steps in a row, SGD (gradients must not pile up)", _step_case(2, 5, 0.5, "sgd")),
        Case("two steps, LARS, temperature 0.2", _step_case(2, 8, 0.2, "lars")),
        Case("three steps, SGD with Nesterov momentum, 2 images", _step_case(3, 2, 0.1, "nesterov")),
        Case("x1 and x2 with different numbers of images", _step_case(1, 4, 0.5, "sgd", n2=2), raises=ValueError),
    ],
    hints=[
        "Both views go through the same encoder and head: z1 = head(encoder(x1)), z2 = head(encoder(x2)). The "
        "loss of notebook 01 wants one (2N, D) tensor whose rows i and i + N are the two views of image i.",
        "loss = nt_xent(torch.cat([z1, z2]), temperature); then, in this order, optimizer.zero_grad(), "
        "loss.backward(), optimizer.step().",
        "Return loss.item(), a Python float. Before anything, raise ValueError if len(x1) != len(x2): row i of "
        "each must be a view of the same image.",
    ],
    compare=_compare_step,
    diagnose=_diagnose_step,
    library=(make_step,),
))


def check_simclr_step(fn):
    """fn(encoder, head, optimizer, x1 (N, 3, H, W) float32, x2 (N, 3, H, W) float32, temperature) -> float.

    One SimCLR step: z = head(encoder(.)) of both views, NT-Xent on the (2N, D) concatenation, zero_grad,
    backward, step; returns the loss as a Python float. Checked on small models against a reference step."""
    # Not a function: the framework says so, rather than the wrapper failing on its first call.
    return check("simclr_step", functools.partial(run_steps, fn) if callable(fn) else fn)


__all__ = ["check_simclr_step"]
