"""Notebook 06's exercises: right answers pass, each classic bug fails with its own message, bad inputs are
reported; the references are the library's; no reference is imported before its exercise in the student
version; the self-check's computed answer is right."""

from __future__ import annotations

import ast
import math
import random
from pathlib import Path

import pytest
import torch

from course_lib import assignments, ipynb
from course_lib.checks import (REGISTRY, check_accuracy_ci95, check_protonet_logits, check_sample_episode,
                               check_self_check_06)
from course_lib.checks import episodes as episode_checks
from course_lib.checks import omniglot as omniglot_checks
from course_lib.data import sample_episodes
from course_lib.meta.protonet import protonet_logits as library_protonet_logits
from course_lib.meta.train import mean_ci95
from notebook_code import fails as _fails, worked as _worked

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_maml_omniglot.ipynb"


@pytest.fixture(autouse=True)
def _seeded():
    random.seed(6)  # the checks draw their cases from Python's random: reproducible failures


# ---- the worked solutions pass, whatever the cases' seed ---------------------------------------


@pytest.mark.parametrize("name, check", [("sample_episode", check_sample_episode),
                                         ("protonet_logits", check_protonet_logits),
                                         ("accuracy_ci95", check_accuracy_ci95)])
def test_worked_solution_passes_for_many_seeds(name, check):
    fn = _worked(name)
    for seed in range(8):
        random.seed(seed)
        check(fn)  # raises CheckFailed on a failure


# ---- sample_episode ----------------------------------------------------------------------------


def _episode(images, n_way, k_shot, n_query, generator, *, chars=None, picks=None, labels=None):
    """A correct episode, or one with the given characters (N,), drawings (N, K+Q) or labels (N, K+Q) swapped in."""
    n_chars, n_drawings = images.shape[:2]
    if n_way > n_chars or k_shot + n_query > n_drawings:
        raise ValueError("too many")
    chars = torch.randperm(n_chars, generator=generator)[:n_way] if chars is None else chars
    if picks is None:
        picks = torch.stack([torch.randperm(n_drawings, generator=generator)[:k_shot + n_query] for _ in range(n_way)])
    x = images[chars[:, None], picks]
    y = torch.arange(n_way)[:, None].expand(n_way, k_shot + n_query) if labels is None else labels
    shape = images.shape[2:]
    return (x[:, :k_shot].reshape(-1, *shape), y[:, :k_shot].reshape(-1),
            x[:, k_shot:].reshape(-1, *shape), y[:, k_shot:].reshape(-1))


def test_episode_reference_is_one_task_of_the_librarys_sampler():
    images = episode_checks._labelled_images(30, 20, 4)
    got = episode_checks._library_episode(images, 5, 2, 3, torch.Generator().manual_seed(1))
    want = sample_episodes(images, 5, 2, 3, 1, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(g, w[0]) for g, w in zip(got, want))
    assert episode_checks._episode_problem(got, got) is None  # the library's episode has every property


def test_episode_from_the_global_generator_is_not_reproducible():
    def global_rng(images, n_way, k_shot, n_query, generator):
        return _episode(images, n_way, k_shot, n_query, None)  # torch.randperm(..., generator=None)

    _fails(check_sample_episode, global_rng, "seeded alike gave different episodes", "generator=generator")


def test_support_and_query_drawn_apart_can_share_a_drawing():
    def independent(images, n_way, k_shot, n_query, generator):
        d = images.shape[1]
        picks = torch.stack([torch.cat([torch.randperm(d, generator=generator)[:k_shot],
                                        torch.randperm(d, generator=generator)[:n_query]]) for _ in range(n_way)])
        return _episode(images, n_way, k_shot, n_query, generator, picks=picks)

    _fails(check_sample_episode, independent, "uses one drawing twice")


def test_characters_drawn_with_replacement_share_a_label():
    def with_replacement(images, n_way, k_shot, n_query, generator):
        chars = torch.randint(images.shape[0], (n_way,), generator=generator)
        return _episode(images, n_way, k_shot, n_query, generator, chars=chars)

    _fails(check_sample_episode, with_replacement, "share a character")


def test_labels_interleaved_instead_of_grouped():
    def interleaved(images, n_way, k_shot, n_query, generator):
        x_s, _, x_q, _ = _episode(images, n_way, k_shot, n_query, generator)
        return x_s, torch.arange(n_way).repeat(k_shot), x_q, torch.arange(n_way).repeat(n_query)

    _fails(check_sample_episode, interleaved, "is [0, 1, 2, 3, 4, 0", "grouped by label")


def test_drawings_flattened_in_the_wrong_order_mix_characters():
    def transposed(images, n_way, k_shot, n_query, generator):
        x_s, y_s, x_q, y_q = _episode(images, n_way, k_shot, n_query, generator)
        shape = x_s.shape[1:]
        return (x_s.view(n_way, k_shot, *shape).transpose(0, 1).reshape(-1, *shape), y_s,
                x_q.view(n_way, n_query, *shape).transpose(0, 1).reshape(-1, *shape), y_q)

    _fails(check_sample_episode, transposed, "holds drawings of characters")


def test_episode_bad_outputs_and_missing_raise():
    def three_values(*args):
        return _episode(*args)[:3]

    def float_labels(*args):
        x_s, y_s, x_q, y_q = _episode(*args)
        return x_s, y_s.float(), x_q, y_q.float()

    def rescaled(*args):
        x_s, y_s, x_q, y_q = _episode(*args)
        return x_s / 255, y_s, x_q / 255, y_q

    def no_raise(images, n_way, k_shot, n_query, generator):
        return _episode(images, min(n_way, images.shape[0]), k_shot, min(n_query, images.shape[1] - k_shot), generator)

    _fails(check_sample_episode, three_values, "returned 3 value(s); expected 4")
    _fails(check_sample_episode, float_labels, "y_support is torch.float32", "expected torch.int64")
    _fails(check_sample_episode, rescaled, "is not one of the drawings of `images`")
    _fails(check_sample_episode, no_raise, "should raise ValueError")
    _fails(check_sample_episode, "not a function", "expected a function")


# ---- protonet_logits ---------------------------------------------------------------------------


def _prototypes(support, labels, n_way):
    return torch.stack([support[labels == c].mean(0) for c in range(n_way)])


def test_protonet_reference_is_the_librarys_euclidean_logits():
    support, labels, query, n_way = omniglot_checks._embeddings(torch.Generator().manual_seed(0), 4, 3, 5, 8, True)
    want = -((query[:, None] - _prototypes(support, labels, n_way)[None]) ** 2).sum(-1)
    got = REGISTRY["protonet_logits"].reference(support, labels, query, n_way)
    assert torch.allclose(got, want, atol=1e-4) and got.dtype == torch.float32
    assert torch.equal(got, library_protonet_logits(support, labels, query, n_way))


@pytest.mark.parametrize("buggy, words", [
    (lambda s, y, q, n: ((q[:, None] - _prototypes(s, y, n)[None]) ** 2).sum(-1), "LARGER logit"),
    (lambda s, y, q, n: -torch.cdist(q, _prototypes(s, y, n)), "SQUARED distance"),
    (lambda s, y, q, n: -torch.cdist(q, s.view(n, -1, s.shape[1]).mean(1)) ** 2, "grouped by class"),
    (lambda s, y, q, n: -torch.cdist(q, torch.stack([s[y == c].sum(0) for c in range(n)])) ** 2, "not means"),
])
def test_protonet_classic_bugs_are_named(buggy, words):
    _fails(check_protonet_logits, buggy, words)


def test_protonet_transposed_and_detached_outputs():
    right = _worked("protonet_logits")
    _fails(check_protonet_logits, lambda s, y, q, n: right(s, y, q, n).T, "wrong shape")
    _fails(check_protonet_logits, lambda s, y, q, n: right(s, y, q, n).detach(), "no gradient reaches input 0")
    _fails(check_protonet_logits, lambda s, y, q, n: right(s.double(), y, q.double(), n), "wrong dtype")


# ---- accuracy_ci95 -----------------------------------------------------------------------------


def test_ci95_reference_is_the_librarys_convention():
    acc = omniglot_checks._task_accuracies(torch.Generator().manual_seed(0), 7)
    mean, half = omniglot_checks._ci95_reference(acc)
    values = acc.double().tolist()
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    assert mean == pytest.approx(sum(values) / len(values)) and half == pytest.approx(1.96 * s / math.sqrt(7))
    assert (mean, half) == (mean_ci95(acc).mean, mean_ci95(acc).ci95)


def _ci(acc, *, unbiased=True, divide=None, z=1.96, scale=1.0):
    n = acc.numel()
    if n < 2:
        raise ValueError("one task")
    return scale * acc.mean().item(), scale * z * acc.std(unbiased=unbiased).item() / (divide or math.sqrt)(n)


@pytest.mark.parametrize("buggy, words", [
    (lambda a: _ci(a, unbiased=False), "population standard deviation"),
    (lambda a: _ci(a, divide=lambda n: 1), "not of their mean"),
    (lambda a: _ci(a, divide=lambda n: n), "you divided by T"),
    (lambda a: _ci(a, z=1.0), "one standard error"),
    (lambda a: _ci(a, scale=100.0), "returned percentages"),
])
def test_ci95_classic_bugs_are_named(buggy, words):
    _fails(check_accuracy_ci95, buggy, words)


@pytest.mark.filterwarnings(r"ignore:std\(\)")  # the std of one task, which the buggy code computes
def test_ci95_one_task_and_bad_outputs():
    def no_raise(acc):
        return acc.mean().item(), 1.96 * acc.std().item() / math.sqrt(acc.numel())

    _fails(check_accuracy_ci95, no_raise, "one task: no interval", "should raise ValueError")
    _fails(check_accuracy_ci95, lambda acc: _ci(acc)[1], "returned 1 value(s), expected 2")
    _fails(check_accuracy_ci95, lambda acc: 1 / 0, "ZeroDivisionError")


# ---- the self-check ----------------------------------------------------------------------------


def test_self_check_answers_and_feedback(capsys):
    assert omniglot_checks.check_self_check_06.__name__ == "check_self_check_06"
    check_self_check_06({1: 100 * 1.96 * 0.05 / math.sqrt(600), 2: "b", 3: "c", 4: "b"})
    assert "0.4 points" in capsys.readouterr().out
    message = _fails(check_self_check_06, {1: 0.0049, 2: "a", 3: "c", 4: "b"}, "2 of 4 not right yet")
    assert "percentage points" in message and "no running averages" in message
    _fails(check_self_check_06, {1: 0.4, 2: "b", 3: "c"}, "no answer to question(s) [4]")


# ---- the notebook ------------------------------------------------------------------------------


# Each exercise's library reference, as a name a learner could import before solving it.
REFERENCES = {"sample_episode": ("episode_sampler", "sample_episodes"),
              "protonet_logits": ("protonet_logits",),
              "accuracy_ci95": ("mean_ci95", "score_tasks", "Score")}


def test_student_version_imports_no_reference_before_its_exercise():
    student = assignments.student_notebook(ipynb.read(NOTEBOOK), NOTEBOOK.name)
    cells = student["cells"]
    for name, refs in REFERENCES.items():
        index = next(i for i, c in enumerate(cells) if ipynb.nbgrader(c).get("grade_id") == name)
        for cell in cells[:index]:
            text = ipynb.source(cell)
            if cell["cell_type"] != "code":
                continue
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    imported = {alias.asname or alias.name for alias in node.names}
                    assert not imported & set(refs), f"{name}: {imported & set(refs)} imported before the exercise"
