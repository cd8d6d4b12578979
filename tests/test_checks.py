"""The exercise framework: a right answer passes, and each kind of wrong answer gets its own message.

Then the contrastive exercises of notebooks 00 and 01: every worked solution passes its check, a stub
is "Not implemented yet", and each classic bug gets its specific diagnosis.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import checks
from course_lib.checks import CheckFailed, Case, Exercise, check, framework, hint, run, solution
from course_lib.checks import contrastive, contrastive_solutions as sol
from course_lib.contrastive.losses import positive_index


def _reference_softplus(x):
    """The reference: softplus, elementwise, same shape and dtype."""
    return F.softplus(x)


@pytest.fixture
def exercise(monkeypatch):
    """A small exercise registered for one test, with fresh hint counters."""
    ex = Exercise(
        "_test_softplus", _reference_softplus,
        [Case("a (3, 4) tensor, with gradient", lambda g: (torch.randn(3, 4, generator=g),), grad=True),
         Case("large inputs (100)", lambda g: (torch.full((2,), 100.0),)),
         Case("a 3-D input must raise ValueError", lambda g: (torch.randn(2, 2, 2, generator=g),), raises=ValueError)],
        hints=["first hint", "second hint", "last hint"],
        solution="def softplus(x):\n    return torch.logaddexp(x, torch.zeros_like(x))\n",
    )
    monkeypatch.setitem(framework.REGISTRY, ex.name, ex)
    monkeypatch.setattr(framework, "_hints_shown", {})
    return ex


def right(x):
    if x.dim() > 2:
        raise ValueError("expected at most 2-D")
    return torch.logaddexp(x, torch.zeros_like(x))


def _message(ex, fn):
    result = run(ex, fn, seed=0)
    assert not result.passed
    return result.message


def test_right_answer_passes(exercise, capsys):
    result = check(exercise.name, right, seed=0)
    assert result.passed and len(result.cases_run) == 3
    assert capsys.readouterr().out.startswith(f"✓ {exercise.name}: 3 cases passed")


def test_wrong_shape(exercise):
    message = _message(exercise, lambda x: right(x).sum(dim=-1))
    assert "Case 'a (3, 4) tensor, with gradient'" in message
    assert "wrong shape: got (3,), expected (3, 4)" in message


def test_wrong_dtype(exercise):
    assert "wrong dtype: got torch.float64, expected torch.float32" in _message(exercise, lambda x: right(x).double())


def test_wrong_value_reports_the_largest_difference(exercise):
    def off_by_one_somewhere(x):
        out = right(x)
        return out + (torch.arange(out.numel()).view(out.shape) == 5)  # + 1 at flat index 5 = (1, 1)

    message = _message(exercise, off_by_one_somewhere)
    assert "wrong values: largest difference 1 at index (1, 1)" in message


def test_not_a_tensor(exercise):
    assert "returned a list, expected a torch.Tensor of shape (3, 4)" in _message(exercise, lambda x: right(x).tolist())


def test_non_finite_output(exercise):
    message = _message(exercise, lambda x: torch.log(1 + torch.exp(x)))  # exp(100) overflows float32
    assert "Case 'large inputs (100)'" in message and "NaN or inf where the reference is finite" in message


@pytest.mark.parametrize("got", [float("nan"), float("inf"), 0.0])
def test_non_finite_reference_values_must_be_matched_exactly(got):
    """A masked logit (-inf) in the reference: NaN, +inf or a finite number there is wrong, not "within tolerance"."""
    want = torch.tensor([float("-inf"), 1.0])
    message = framework.compare_outputs(torch.tensor([got, 1.0]), want, rtol=1e-4, atol=1e-5)
    assert message is not None and "wrong values at index (0,)" in message and "same value" in message
    assert framework.compare_outputs(want.clone(), want, rtol=1e-4, atol=1e-5) is None
    nan = torch.tensor([float("nan"), 2.0])
    assert framework.compare_outputs(nan.clone(), nan, rtol=1e-4, atol=1e-5) is None


@pytest.mark.parametrize("got,want", [(float("nan"), 1.0), (float("-inf"), float("inf")), (1.1, 1.0),
                                      (torch.tensor(float("nan")), 0.5)])
def test_a_wrong_or_nan_number_fails_a_float_comparison(got, want):
    assert "wrong value" in framework.compare_outputs(got, want, rtol=1e-4, atol=1e-5)


def test_a_number_within_tolerance_passes():
    assert framework.compare_outputs(1.0 + 1e-6, 1.0, rtol=1e-4, atol=1e-5) is None
    assert framework.compare_outputs(float("inf"), float("inf"), rtol=1e-4, atol=1e-5) is None


def test_stub_on_a_raises_case_is_not_implemented_even_when_runtimeerror_is_expected():
    """NotImplementedError subclasses RuntimeError: a stub must not pass a case that expects RuntimeError."""
    ex = Exercise("_test_raises_runtime", lambda x: x, [Case("bad input", lambda g: (torch.zeros(1),), raises=RuntimeError)],
                  hints=["h"])

    def stub(x):
        raise NotImplementedError("Exercise '_test_raises_runtime': replace this line with your code.")

    result = run(ex, stub, seed=0)
    assert not result.passed and result.message.startswith("Not implemented yet")


def test_detached_output_means_no_gradient(exercise):
    message = _message(exercise, lambda x: right(x).detach())
    assert "no gradient reaches input 0" in message and ".detach()" in message


def test_wrong_gradient_with_right_value(exercise):
    def half_gradient(x):
        y = right(x)
        return 0.5 * y + 0.5 * y.detach()  # same value, half the gradient

    message = _message(exercise, half_gradient)
    assert "the values match but the gradient w.r.t. input 0 does not" in message
    assert "largest difference" in message


def test_learner_exception_is_one_paragraph_with_the_learners_line(exercise):
    def broken(x):
        scale = x.shape[5]  # IndexError here
        return x * scale

    message = _message(exercise, broken)
    assert "your function raised IndexError" in message
    assert "of your code: `scale = x.shape[5]  # IndexError here`" in message
    assert "\n" not in message and "Traceback" not in message


def test_not_implemented_yet(exercise):
    def stub(x):
        raise NotImplementedError("Exercise '_test_softplus': replace this line with your code.")

    message = _message(exercise, stub)
    assert message.startswith("Not implemented yet: Exercise '_test_softplus'")


def test_missing_raise_on_bad_input(exercise):
    message = _message(exercise, lambda x: torch.logaddexp(x, torch.zeros_like(x)))
    assert "Case 'a 3-D input must raise ValueError'" in message
    assert "should raise ValueError, but your code returned normally" in message


def test_wrong_exception_type_on_bad_input(exercise):
    def raises_type_error(x):
        if x.dim() > 2:
            raise TypeError("nope")
        return right(x)

    assert "expected ValueError for this bad input, but your code raised TypeError: nope" in _message(exercise, raises_type_error)


def test_check_raises_checkfailed_pointing_to_the_hint(exercise):
    with pytest.raises(CheckFailed, match=r"wrong shape.*Stuck\? hint\('_test_softplus'\)"):
        check(exercise.name, lambda x: right(x).flatten(), seed=0)


def test_not_a_function(exercise):
    assert "expected a function, got int" in _message(exercise, 3)


def test_diagnosis_is_appended_and_never_raises(exercise, monkeypatch):
    explained = Exercise(**{**exercise.__dict__, "diagnose": lambda fn, gen: "Here is why."})
    assert _message(explained, lambda x: right(x) + 1).endswith("Here is why.")

    def crashing(fn, gen):
        raise RuntimeError("diagnosis bug")

    quiet = Exercise(**{**exercise.__dict__, "diagnose": crashing})
    assert "diagnosis bug" not in _message(quiet, lambda x: right(x) + 1)


def test_output_that_depends_only_on_parameters():
    """A case without differentiable inputs (a model built from ints) must not crash the gradient step."""
    ex = Exercise("_test_linear", lambda n: nn.Linear(n, 2)(torch.ones(1, n)).shape[1] * torch.ones(()),
                  [Case("n=3", lambda g: (3,), grad=True)], hints=["h"])
    assert run(ex, lambda n: 2 * torch.ones(()), seed=0).passed


def test_hints_progress_then_stay_on_the_last(exercise, capsys):
    texts = [hint(exercise.name) for _ in range(4)]
    assert texts[0].startswith("Hint 1 of 3 for _test_softplus: first hint") and "again for the next" in texts[0]
    assert texts[1].startswith("Hint 2 of 3") and "second hint" in texts[1]
    assert texts[2].startswith("Hint 3 of 3") and "solution('_test_softplus')" in texts[2]
    assert texts[3] == texts[2]
    assert capsys.readouterr().out.count("Hint") == 4


def test_solution_prints_source(exercise, capsys):
    text = solution(exercise.name)
    assert "torch.logaddexp" in text and "torch.logaddexp" in capsys.readouterr().out
    no_solution = Exercise(**{**exercise.__dict__, "solution": None})
    framework.REGISTRY[exercise.name] = no_solution
    assert "def _reference_softplus(x):" in solution(exercise.name)  # defaults to the reference's source


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match="no exercise called 'nope'.*nt_xent"):
        hint("nope")
    with pytest.raises(KeyError, match="no exercise called 'nope'"):
        solution("nope")


# ---- the contrastive exercises ------------------------------------------------------------------

SOLUTIONS = {
    "l2_normalize": sol.l2_normalize, "softmax_cross_entropy": sol.softmax_cross_entropy, "nt_xent": sol.nt_xent,
    "similarity_gradient": sol.similarity_gradient, "info_nce_bound": sol.info_nce_bound,
    "alignment": sol.alignment, "uniformity": sol.uniformity, "fix_positive_pairs": sol.fixed_positive_pairs,
    "fix_similarity_shape": sol.fixed_similarity_matrix, "fix_cached_logits": sol.fixed_cached_loss,
    "fix_meta_update": sol.fixed_meta_update, "fix_flatten_size": sol.FixedNet,
}


def test_every_contrastive_exercise_has_a_check_and_enough_hints():
    assert set(SOLUTIONS) == {ex.name for ex in contrastive.EXERCISES}
    for name in SOLUTIONS:
        assert callable(getattr(checks, f"check_{name}")), name
        assert len(framework.REGISTRY[name].hints) >= 2, name


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_worked_solution_passes_its_check(name, seed):
    learner = contrastive._Build(SOLUTIONS[name]) if name == "fix_flatten_size" else SOLUTIONS[name]
    result = run(framework.REGISTRY[name], learner, seed=seed)
    assert result.passed, result.message


def test_check_functions_print_success(capsys):
    assert checks.check_nt_xent(sol.nt_xent).passed and checks.check_fix_flatten_size(sol.FixedNet).passed
    out = capsys.readouterr().out
    assert "✓ nt_xent: 5 cases passed" in out and "✓ fix_flatten_size: 3 cases passed" in out


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_stub_is_not_implemented_yet(name):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise '{name}': replace this line with your code.")

    with pytest.raises(CheckFailed, match=f"{name}: Not implemented yet"):
        getattr(checks, f"check_{name}")(stub)


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_solution_shows_the_worked_solution(name, capsys):
    text = solution(name)
    assert text.lstrip().startswith(("def ", "class ")) and text == capsys.readouterr().out.rstrip("\n") + "\n"


# The bugs of notebook 01, exactly as the learner sees them.

def buggy_positive_pairs(z, temperature=0.5):
    rows = len(z)
    zn = F.normalize(z, dim=1)
    logits = (zn @ zn.T / temperature).masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.arange(rows) ^ 1)


def buggy_similarity_matrix(z):
    zn = F.normalize(z, dim=1)
    return F.cosine_similarity(zn.unsqueeze(1), zn.unsqueeze(1), dim=-1)


def make_cached_loss():
    cache = {}

    def buggy_cached_loss(z, temperature=0.5):
        rows = len(z)
        if "logits" not in cache:
            zn = F.normalize(z, dim=1)
            cache["logits"] = (zn @ zn.T / temperature).masked_fill(torch.eye(rows, dtype=torch.bool), float("-inf"))
        return F.cross_entropy(cache["logits"], (torch.arange(rows) + rows // 2) % rows)

    return buggy_cached_loss


def buggy_meta_update(w, x_support, y_support, x_query, y_query, inner_lr, meta_lr):
    w_new = sol.fixed_meta_update(w, x_support, y_support, x_query, y_query, inner_lr, meta_lr)
    return 2 * w - w_new  # w + meta_lr * gradient


class BuggyNet(sol.FixedNet):
    def __init__(self, in_channels=1, image_size=28, n_classes=5):
        super().__init__(in_channels, image_size, n_classes)
        self.head = nn.Linear(32 * image_size * image_size, n_classes)


def nt_xent_with_diagonal(z, temperature=0.5):
    zn = F.normalize(z, dim=1)
    return F.cross_entropy(zn @ zn.T / temperature, positive_index(len(z)))


def nt_xent_unnormalised(z, temperature=0.5):
    logits = (z @ z.T / temperature).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, positive_index(len(z)))


def uniformity_with_self_pairs(x, t=2.0):
    xn = F.normalize(x, dim=1)
    return (-t * torch.cdist(xn, xn).pow(2)).exp().mean().log()


def naive_cross_entropy(logits, targets):
    p = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
    return -p.gather(1, targets[:, None]).log().mean()


def nt_xent_without_raise(z, temperature=0.5):
    return sol.nt_xent(z[: len(z) // 2 * 2], temperature)


BUGS = [
    ("fix_positive_pairs", buggy_positive_pairs, "the targets must point row i at row i + N"),
    ("fix_similarity_shape", buggy_similarity_matrix, "both operands were expanded along the same axis"),
    ("fix_cached_logits", make_cached_loss(), "returned the same loss"),
    ("fix_meta_update", buggy_meta_update, "gradient ascent"),
    ("fix_flatten_size", BuggyNet, "your first Linear layer expects in_features=25088"),
    ("nt_xent", nt_xent_with_diagonal, "Mask s(i, i) with -inf"),
    ("nt_xent", nt_xent_unnormalised, "L2-normalise the rows"),
    ("nt_xent", nt_xent_without_raise, "should raise ValueError"),
    ("softmax_cross_entropy", naive_cross_entropy, "NaN or inf"),
    ("similarity_gradient", lambda s, t: sol.similarity_gradient(s, t) * len(s), "the right one times"),
    ("similarity_gradient", lambda s, t: sol.similarity_gradient(s, t) + torch.eye(len(s)), "diagonal must be exactly 0"),
    ("uniformity", uniformity_with_self_pairs, "distance to itself"),
    ("l2_normalize", lambda x: x / x.norm(dim=1, keepdim=True), "NaN or inf"),
    ("alignment", lambda x, y, alpha=2.0: sol.alignment(x, y, alpha).detach(), "no gradient reaches input 0"),
    ("info_nce_bound", lambda a, p, t=0.1: sol.info_nce_bound(a[: len(p)], p[: len(a)], t), "should raise ValueError"),
]


@pytest.mark.parametrize("name,buggy,words", BUGS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BUGS)])
def test_each_bug_gets_its_specific_message(name, buggy, words):
    with pytest.raises(CheckFailed) as failure:
        getattr(checks, f"check_{name}")(buggy)
    assert words in str(failure.value)


# ---- the exercises of notebooks 02 (views) ------------------------------------------------------

def test_views_exercises_accept_the_library_and_reject_classic_bugs():
    from course_lib.contrastive.views import batched_flip, crop_params_from_uniforms

    assert checks.check_batched_flip(batched_flip).passed
    assert checks.check_random_resized_crop_params(crop_params_from_uniforms).passed
    with pytest.raises(CheckFailed, match="wrong values"):  # mirrored top-bottom instead of left-right
        checks.check_batched_flip(lambda x, flip: torch.where(flip.view(-1, 1, 1, 1), x.flip(-2), x))

    def only_first_attempt(u_attempts, u_pos, height, width, scale, ratio):
        """Falls back to the central crop as soon as the first attempt does not fit, skipping the other 9."""
        return crop_params_from_uniforms(u_attempts[:, :1], u_pos, height, width, scale, ratio)

    with pytest.raises(CheckFailed, match="Case 'CIFAR-sized, 10 attempts'.*wrong values"):
        checks.check_random_resized_crop_params(only_first_attempt)
