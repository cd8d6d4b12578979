"""Exercises of notebook 01, part 2: the autopsy of a broken training script.

The notebook shows a short SimCLR-style script (an encoder, an NT-Xent loss, an optimiser, a loop) that
fails three times in a row and states a worked example that is wrong. The learner fixes each failure
(`fix_encoder`, `fix_nt_xent_loss`, `fix_optimizer`) and recomputes the example (`worked_example`); the
autopsy's last exercise, a test that catches buggy losses, is in catches.py.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks.framework import Case, Exercise, _describe_exception, check, register
from course_lib.checks.quiz import Choice, Number, self_check
from course_lib.contrastive import losses

__all__ = ["first_failure", "check_fix_encoder", "check_fix_nt_xent_loss", "check_fix_optimizer",
           "check_worked_example"]


def first_failure(run: Callable[[], object]) -> str | None:
    """Run `run()`; print and return "ErrorType: message" if it raises (with the line that raised), else None.

    The notebook meets each failure of the script through this, so that the cell itself succeeds and a
    "Run all" goes on to the next section. An unsolved exercise is not one of the script's failures: its
    NotImplementedError propagates, with the message that names the exercise to solve first.
    """
    try:
        run()
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure is what the learner is here to read
        print(f"It fails. {_describe_exception(exc)}")
        return f"{type(exc).__name__}: {exc}"
    print("It runs without an error.")
    return None


# ---------------------------------------------------------------- fix_encoder

EMBEDDING = 128  # the script's embedding size: its encoder maps (B, 3, H, W) to (B, 128)


def _measured_encoder() -> nn.Module:
    """The reference of `fix_encoder`: the script's layers, with the first Linear layer sized for what the
    1 x 1 pooling delivers (128 values per image, whatever H and W)."""
    return nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 128, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 1024), nn.ReLU(),
                         nn.Linear(1024, EMBEDDING))


def _encode(encoder_class, x: torch.Tensor) -> torch.Tensor:
    """Build the learner's encoder and embed x (B, 3, H, W): (B, 128)."""
    return encoder_class()(x)


def _compare_embedding_shape(got, want) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"the encoder returned a {type(got).__name__}, expected a tensor of shape {tuple(want.shape)}."
    if got.shape != want.shape:
        return f"the encoder's output has shape {tuple(got.shape)}, expected (batch, 128) = {tuple(want.shape)}."
    if not torch.isfinite(got).all():
        return "the encoder's output contains NaN or inf."
    return None


def _diagnose_encoder(encoder_class, gen) -> str | None:
    encoder, arrived = encoder_class(), []
    first = next((m for m in encoder.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        return None
    # A pre-hook that returns None passes the inputs on unchanged: it only records their width.
    first.register_forward_pre_hook(lambda module, inputs: arrived.append(inputs[0].shape[-1]))
    try:
        encoder(torch.rand(2, 3, 32, 32, generator=gen))
    except RuntimeError:
        pass
    if arrived and arrived[0] != first.in_features:
        return (f"Your first Linear layer expects in_features={first.in_features}, but {arrived[0]} values per image "
                "arrive: print x.shape after each step of forward() and size the layer from what really arrives.")
    return None


def check_fix_encoder(encoder_class):
    """`encoder_class()` builds the encoder: (B, 3, H, W) float32 -> (B, 128) float32, for any H, W >= 16."""
    if not callable(encoder_class):
        return check("fix_encoder", encoder_class)
    return check("fix_encoder", functools.partial(_encode, encoder_class))


# ---------------------------------------------------------------- fix_nt_xent_loss


def _pair_loss_reference(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of the views z_i (N, D) and z_j (N, D): the library's reference on their concatenation."""
    return losses.nt_xent_reference(torch.cat([z_i, z_j]), temperature)


def _view_pair(n: int, d: int, temperature: float, scale: float = 1.0):
    return lambda g: (scale * torch.randn(n, d, generator=g), scale * torch.randn(n, d, generator=g), temperature)


def check_fix_nt_xent_loss(fn):
    """fn(z_i (N, D), z_j (N, D), temperature) -> scalar NT-Xent of the 2N views (float32, differentiable)."""
    return check("fix_nt_xent_loss", fn)


# ---------------------------------------------------------------- fix_optimizer


def _regression(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small seeded model (a linear layer, and one frozen bias it must not touch) with its data."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    model[2].bias.requires_grad_(False)
    return model, torch.randn(16, 4, generator=gen), torch.randn(16, 1, generator=gen)


def _train_with(make_optimizer: Callable, seed: int, steps: int, lr: float, closure: bool) -> torch.Tensor:
    """Train `_regression(seed)` for `steps` steps of the standard loop (zero_grad, backward, step(), or
    step(closure)) with make_optimizer(params, lr); returns every parameter, flattened into one (P,) tensor."""
    model, x, y = _regression(seed)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], lr)
    for _ in range(steps):
        def loss_closure():
            optimizer.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss
        if closure:
            optimizer.step(loss_closure)
        else:
            loss_closure()
            optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _sgd_by_hand(seed: int, steps: int, lr: float, closure: bool) -> torch.Tensor:
    """The reference of `fix_optimizer`: the same loop, descending by hand with autograd.grad."""
    model, x, y = _regression(seed)
    trained = [p for p in model.parameters() if p.requires_grad]
    for _ in range(steps):
        grads = torch.autograd.grad(F.mse_loss(model(x), y), trained)
        with torch.no_grad():
            for p, g in zip(trained, grads):
                p -= lr * g
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _diagnose_optimizer(train, gen) -> str | None:
    make_optimizer = train.args[0]
    model, x, y = _regression(0)
    optimizer = make_optimizer(list(model.parameters())[:2], 0.1)
    F.mse_loss(model(x), y).backward()
    try:
        optimizer.step()
    except TypeError as exc:
        return (f"optimizer.step() raised TypeError ({exc}). The loop has already called loss.backward(), which "
                "leaves each parameter's gradient in p.grad: step() needs no loss, only an optional closure.")
    return None


def check_fix_optimizer(optimizer_class):
    """`optimizer_class(params, lr)` with zero_grad() and step(closure=None): plain gradient descent, used by
    the standard loop `optimizer.zero_grad(); loss.backward(); optimizer.step()`."""
    if not callable(optimizer_class):
        return check("fix_optimizer", optimizer_class)
    return check("fix_optimizer", functools.partial(_train_with, optimizer_class))


# ---------------------------------------------------------------- worked_example

POSITIVE, NEGATIVE = 0.8, 0.2  # the example's similarities to the positive and to the one negative (t = 1)

check_worked_example = self_check("worked_example", {
    1: Number(lambda: -math.log(math.exp(POSITIVE) / math.exp(NEGATIVE)),
              why="As written, -log(e^0.8 / e^0.2) = -(0.8 - 0.2) = -0.6: not -0.22, and negative.",
              hint="evaluate -log(e^0.8 / e^0.2) exactly as written (math.exp, math.log)."),
    2: Number(lambda: -math.log(math.exp(POSITIVE) / (math.exp(POSITIVE) + math.exp(NEGATIVE))),
              why="InfoNCE divides by the sum over all candidates, the positive included: "
                  "-log(e^0.8 / (e^0.8 + e^0.2)) = log(1 + e^-0.6) = 0.437 nats.",
              hint="the denominator of InfoNCE sums e^(s/t) over every candidate, the positive included."),
    3: Choice("b", why="A softmax probability is at most 1, so -log of it is at least 0; e^0.8 / e^0.2 is no "
                       "probability: the normaliser cancelled and what is left, s_neg - s_pos, is unbounded below.",
              wrong={"a": "a rounding slip cannot turn 0.437 into -0.22, nor make a cross-entropy negative.",
                     "c": "with t = 1 there is nothing to divide by: the temperature does not change the sign."}),
}, hints=[
    "Compute both expressions with math.exp and math.log; do not trust the printed value.",
    "A cross-entropy is -log of a probability. Which of the two expressions is -log of a number in (0, 1]?",
])


for _exercise in [
    Exercise("fix_encoder", lambda x: _measured_encoder()(x), [
        Case("a CIFAR-10 batch of 8, 3 x 32 x 32", lambda g: (torch.rand(8, 3, 32, 32, generator=g),)),
        Case("a batch of 3, 3 x 48 x 48", lambda g: (torch.rand(3, 3, 48, 48, generator=g),)),
        Case("one image, 3 x 16 x 16 (the smallest the two 3 x 3 convolutions and poolings allow)",
             lambda g: (torch.rand(1, 3, 16, 16, generator=g),)),
    ], [
        "Print x.shape after each line of forward() for a batch of 8 CIFAR images: what arrives at self.fc?",
        "adaptive_avg_pool2d(x, 1) averages each of the 128 channels to one number, so 128 values per image "
        "arrive, whatever the image size. The first Linear layer needs in_features=128.",
    ], compare=_compare_embedding_shape, diagnose=lambda fn, g: _diagnose_encoder(fn.args[0], g)),
    Exercise("fix_nt_xent_loss", _pair_loss_reference, [
        Case("N=4 pairs, D=16, t=0.5", _view_pair(4, 16, 0.5), grad=True),
        Case("N=1 pair (each view's only candidate is its partner)", _view_pair(1, 8, 0.5), grad=True),
        Case("N=6 pairs, D=5, unnormalised rows (scale 10), t=0.2", _view_pair(6, 5, 0.2, 10.0), grad=True),
    ], [
        "Print expanded.shape: it is (2N, 2N, D). What does .t() do, and on how many dimensions?",
        ".t() transposes a matrix (2 dimensions). To pair every (i, k), swap the first two axes of the 3-D "
        "tensor: expanded.transpose(0, 1), then cosine similarity over dim=2 gives the (2N, 2N) matrix.",
    ], library=(losses.nt_xent, losses.nt_xent_reference)),
    Exercise("fix_optimizer", _sgd_by_hand, [
        Case("5 steps, lr 0.1", lambda g: (int(torch.randint(1000, (1,), generator=g)), 5, 0.1, False)),
        Case("1 step, lr 0.5", lambda g: (int(torch.randint(1000, (1,), generator=g)), 1, 0.5, False)),
        Case("3 steps through step(closure)", lambda g: (int(torch.randint(1000, (1,), generator=g)), 3, 0.05, True)),
    ], [
        "Read the loop: which method does it call, with which arguments? Where is each gradient after loss.backward()?",
        "Follow torch's contract: step(self, closure=None). If a closure is given, call it (under torch.enable_grad()) "
        "to get the loss; then, under torch.no_grad(), p -= lr * p.grad for every p whose grad is not None. "
        "zero_grad() sets every p.grad to None.",
    ], rtol=1e-5, atol=1e-6, diagnose=_diagnose_optimizer),
]:
    register(_exercise)
