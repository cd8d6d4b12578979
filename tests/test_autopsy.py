"""Notebook 01's autopsy: the broken script in the notebook fails exactly as the article's code does, one
failure after another as each is fixed, and the checks of the autopsy tell a found bug from a missed one.

The script's cells are the notebook's own (tagged "seed"), run here as the notebook runs them; the fixes
are the notebook's worked solutions. CIFAR-10 shapes drive the failures, so the images here are random
uint8 images of CIFAR-10's shape; the notebook runs the same script on real test images.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import assignments, checks, ipynb
from course_lib.checks import CheckFailed, autopsy, catches
from course_lib.contrastive import losses

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "01_contrastive_loss_math.ipynb"


def _notebook() -> dict:
    return ipynb.read(NOTEBOOK)


def _seed_namespace() -> dict:
    """The script's cells (the encoder, the loss, the optimiser, the loop) run in a fresh namespace, with
    eight random CIFAR-10-shaped images in place of the data cell's real ones."""
    namespace = {"torch": torch, "F": F, "nn": nn, "math": math}
    exec("from course_lib.checks import *", namespace)
    for cell in _notebook()["cells"]:
        if "seed" in cell.get("metadata", {}).get("tags", []) and "load_cifar10" not in ipynb.source(cell):
            exec(ipynb.source(cell), namespace)
    exec("from course_lib.contrastive.views import simclr_views", namespace)
    namespace["images"] = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8,
                                        generator=torch.Generator().manual_seed(0))
    return namespace


def _with_fix(namespace: dict, exercise: str) -> dict:
    exec(assignments.worked_solutions(_notebook(), NOTEBOOK.name)[exercise], namespace)
    return namespace


def _failure(namespace: dict, encoder: str, loss: str, optimizer: str) -> BaseException | None:
    model = namespace[encoder]()
    try:
        namespace["train"](model, namespace[loss], namespace[optimizer](model.parameters()), namespace["images"], steps=2)
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def test_the_script_has_four_seed_cells_and_a_real_data_cell():
    tagged = [ipynb.source(c) for c in _notebook()["cells"] if "seed" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 5 and "load_cifar10(\"test\")" in tagged[0]


def test_each_failure_appears_in_the_articles_order_with_its_message():
    ns = _seed_namespace()
    first = _failure(ns, "Encoder", "nt_xent_loss", "MetaOptimizer")
    assert isinstance(first, RuntimeError)
    assert str(first) == "mat1 and mat2 shapes cannot be multiplied (8x128 and 4608x1024)"

    _with_fix(ns, "fix_encoder")
    second = _failure(ns, "FixedEncoder", "nt_xent_loss", "MetaOptimizer")
    assert isinstance(second, RuntimeError)
    assert str(second) == "t() expects a tensor with <= 2 dimensions, but self is 3D"

    _with_fix(ns, "fix_nt_xent_loss")
    third = _failure(ns, "FixedEncoder", "fixed_nt_xent_loss", "MetaOptimizer")
    assert isinstance(third, TypeError)
    assert str(third).endswith("step() missing 1 required positional argument: 'loss'")

    _with_fix(ns, "fix_optimizer")
    assert _failure(ns, "FixedEncoder", "fixed_nt_xent_loss", "FixedMetaOptimizer") is None


def test_the_fixed_script_starts_at_the_loss_of_a_guess():
    ns = _seed_namespace()
    for fix in ("fix_encoder", "fix_nt_xent_loss", "fix_optimizer"):
        _with_fix(ns, fix)
    encoder = ns["FixedEncoder"]()
    history = ns["train"](encoder, ns["fixed_nt_xent_loss"], ns["FixedMetaOptimizer"](encoder.parameters(), 0.05),
                          ns["images"], steps=3)
    assert all(math.isfinite(v) for v in history)
    assert abs(history[0] - math.log(15)) < 0.1


def test_the_worked_example_as_written_is_a_negative_number_not_a_loss():
    as_written = -math.log(math.exp(0.8) / math.exp(0.2))
    assert as_written == pytest.approx(-0.6) and as_written != pytest.approx(-0.22, abs=0.01)
    assert -math.log(math.exp(0.8) / (math.exp(0.8) + math.exp(0.2))) == pytest.approx(math.log1p(math.exp(-0.6)))
    checks.check_worked_example({1: -0.6, 2: 0.437, 3: "b"})
    with pytest.raises(CheckFailed, match="question 1"):
        checks.check_worked_example({1: -0.22, 2: 0.437, 3: "b"})
    with pytest.raises(CheckFailed, match="question 2"):
        checks.check_worked_example({1: -0.6, 2: -0.6, 3: "b"})


def test_first_failure_reports_the_error_or_says_it_runs(capsys):
    assert autopsy.first_failure(lambda: None) is None
    assert "runs without an error" in capsys.readouterr().out
    assert autopsy.first_failure(lambda: 1 / 0) == "ZeroDivisionError: division by zero"
    assert "It fails. ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(NotImplementedError, match="fix_encoder"):  # an unsolved fix is not the script's failure
        autopsy.first_failure(lambda: (_ for _ in ()).throw(NotImplementedError("Exercise 'fix_encoder': ...")))


# ---- the checks tell a found bug from a missed one ------------------------------------------------


def test_the_unfixed_pieces_fail_their_checks_with_the_cause():
    ns = _seed_namespace()
    with pytest.raises(CheckFailed, match="expects in_features=4608, but 128 values per image arrive"):
        checks.check_fix_encoder(ns["Encoder"])
    with pytest.raises(CheckFailed, match=r"t\(\) expects a tensor with <= 2 dimensions"):
        checks.check_fix_nt_xent_loss(ns["nt_xent_loss"])
    with pytest.raises(CheckFailed, match="step\\(\\) needs no loss, only an optional closure"):
        checks.check_fix_optimizer(ns["MetaOptimizer"])


def test_an_encoder_sized_for_32_pixels_only_fails_at_other_sizes():
    class WithoutPooling(nn.Module):
        """Drops the pooling instead of resizing the layer: right at 32 x 32 only."""

        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(64, 128, 3),
                                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
            self.head = nn.Sequential(nn.Linear(128 * 6 * 6, 1024), nn.ReLU(), nn.Linear(1024, 128))

        def forward(self, x):
            return self.head(self.features(x))

    with pytest.raises(CheckFailed, match="3 x 48 x 48"):
        checks.check_fix_encoder(WithoutPooling)


def test_optimisers_are_checked_against_the_contract():
    checks.check_fix_optimizer(torch.optim.SGD)  # the standard class honours it

    class NeverClears(torch.optim.SGD):
        def zero_grad(self, set_to_none=True):
            pass  # gradients accumulate across steps

    with pytest.raises(CheckFailed, match="Case '5 steps, lr 0.1'.*wrong values"):
        checks.check_fix_optimizer(NeverClears)

    class Ascends(torch.optim.SGD):
        def __init__(self, params, lr):
            super().__init__(params, lr=lr, maximize=True)

    with pytest.raises(CheckFailed, match="wrong values"):
        checks.check_fix_optimizer(Ascends)


def _compare_on(batches, check_gradient=True):
    """A `catches` that compares with the library's loss on the given (rows, temperature, scale) batches."""
    def catches(loss_fn):
        gen = torch.Generator().manual_seed(0)
        for rows, temperature, scale in batches:
            z = (scale * torch.randn(rows, 5, generator=gen)).requires_grad_(True)
            try:
                got = loss_fn(z, temperature)
                if check_gradient:
                    torch.autograd.grad(got, z)
            except Exception:  # noqa: BLE001
                return True
            if not torch.isclose(got.detach().double(), losses.nt_xent(z.detach().double(), temperature), rtol=1e-4):
                return True
        return False
    return catches


@pytest.mark.parametrize("test,missed", [
    (lambda loss_fn: True, "rejected this correct loss"),
    (lambda loss_fn: False, "let this bug through"),
    (_compare_on([(8, 0.5, 3.0)]), "logits computed on the first call"),
    (_compare_on([(8, 0.5, 3.0), (12, 0.2, 0.5)]), "exp then log without the max trick"),
    (_compare_on([(8, 0.5, 3.0), (12, 0.2, 0.5), (6, 0.01, 1.0)], check_gradient=False), "no gradient reaches"),
    (lambda loss_fn: "no", "catches\\(\\) returned 'no'"),
], ids=["always-buggy", "always-fine", "one-batch", "no-small-temperature", "values-only", "not-a-bool"])
def test_catches_grades_which_inputs_expose_which_bug(test, missed):
    with pytest.raises(CheckFailed, match=missed):
        checks.check_catches(test)


def test_the_bank_holds_both_kinds_and_its_correct_losses_are_correct():
    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    verdicts = [catches._verdict(make()) for _, make in catches._BANK]
    assert 3 <= verdicts.count(False) and 10 <= verdicts.count(True)
    for name, make in catches._BANK:
        loss_fn = make()
        if not catches._verdict(loss_fn):
            assert torch.allclose(loss_fn(z, 0.3), losses.nt_xent_reference(z, 0.3), rtol=1e-5), name
