"""Notebook 02's exercises: right answers pass, each classic bug fails with its own message, bad inputs are
reported; the references agree with torchvision; the self-check's computed answers are right."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from course_lib import checks
from course_lib.checks import views as views_checks
from course_lib.contrastive.views import batched_flip, crop_params_from_uniforms, crop_sizes_from_uniforms
from notebook_code import fails as _fails

OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)


# ---- the references ----------------------------------------------------------------------------


def test_crop_sizes_reference_is_torchvisions_per_attempt_maths():
    """torchvision, per attempt, in Python floats: area * uniform, exp of a uniform log-ratio, round()."""
    u = torch.rand(64, 10, 2, generator=torch.Generator().manual_seed(0))
    height, width, scale, ratio = 24, 40, (0.08, 1.0), (3 / 4, 4 / 3)
    h, w, fits = crop_sizes_from_uniforms(u, height, width, scale, ratio)
    assert h.dtype == w.dtype == torch.int64 and fits.dtype == torch.bool and h.shape == (64, 10)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for b in range(0, 64, 7):
        for a in range(10):
            area = height * width * (scale[0] + (scale[1] - scale[0]) * u[b, a, 0].item())
            aspect = math.exp(lo + (hi - lo) * u[b, a, 1].item())
            want_w, want_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            assert (h[b, a].item(), w[b, a].item()) == (want_h, want_w)
            assert fits[b, a].item() == (0 < want_w <= width and 0 < want_h <= height)


def test_boxes_take_the_first_attempt_that_fits_else_the_central_fallback():
    u = torch.rand(256, 10, 2, generator=torch.Generator().manual_seed(1))
    u_pos = torch.rand(256, 2, generator=torch.Generator().manual_seed(2))
    h, w, fits = crop_sizes_from_uniforms(u, 20, 40)
    boxes = crop_params_from_uniforms(u, u_pos, 20, 40)
    first, found = fits.float().argmax(dim=1), fits.any(dim=1)
    rows = torch.arange(256)[found]
    assert (first[found] > 0).any() and (~found).any()  # later attempts and the fallback are both exercised
    assert torch.equal(boxes[found, 2:], torch.stack([h[rows, first[found]], w[rows, first[found]]], dim=1))
    # 40 / 20 = 2 > 4/3: full height, w = round(20 * 4/3) = 27, centred
    assert (boxes[~found] == torch.tensor([0, (40 - 27) // 2, 20, 27])).all()


def test_colour_jitter_reference_equals_torchvision_image_by_image():
    """The reference is the library's colour_jitter with a zero hue shift: it must be torchvision's three steps."""
    gen = torch.Generator().manual_seed(3)
    x, factors = torch.rand(12, 3, 7, 5, generator=gen), 2 * torch.rand(12, 3, generator=gen)
    got = views_checks._colour_jitter_reference(x, factors)
    for b in range(12):
        want = x[b]
        for k, op in enumerate(OPS):
            want = op(want, factors[b, k].item())
        torch.testing.assert_close(got[b], want, atol=2e-6, rtol=0)


def test_fallback_area_fraction_is_torchvisions():
    """Self-check question 4: torchvision's own fallback on a 20 x 60 image, where no attempt can fit."""
    p = v2.RandomResizedCrop(32, scale=(3.0, 4.0)).make_params([torch.zeros(3, 20, 60)])
    assert views_checks.fallback_area_fraction() == pytest.approx(p["height"] * p["width"] / (20 * 60)) == 0.45


# ---- right answers pass ------------------------------------------------------------------------


@pytest.mark.parametrize("name, fn", [("crop_sizes", crop_sizes_from_uniforms), ("batched_flip", batched_flip),
                                      ("batched_colour_jitter", views_checks._colour_jitter_reference)])
def test_the_librarys_own_function_passes(name, fn, capsys):
    getattr(checks, f"check_{name}")(fn)
    assert capsys.readouterr().out.startswith(f"✓ {name}:")


def test_the_self_check_accepts_the_right_answers(capsys):
    checks.check_self_check_02({1: "b", 2: "a", 3: 4 / 7, 4: 0.45, 5: "C "})
    out = capsys.readouterr().out
    assert out.startswith("✓ self_check_02:") and "  4. 60 / 20 = 3" in out


# ---- classic bugs of crop_sizes ------------------------------------------------------------------


def _sizes_with(*, swap=False, uniform_ratio=False, fraction=False, strict=False, zero_fits=False, dtype=torch.float64):
    """A learner's crop_sizes with one classic slip switched on."""
    def fn(u, height, width, scale, ratio):
        area = (1 if fraction else height * width) * (scale[0] + (scale[1] - scale[0]) * u[..., 0].to(dtype))
        if uniform_ratio:
            aspect = ratio[0] + (ratio[1] - ratio[0]) * u[..., 1].to(dtype)
        else:
            lo, hi = math.log(ratio[0]), math.log(ratio[1])
            aspect = torch.exp(lo + (hi - lo) * u[..., 1].to(dtype))
        w, h = torch.round(torch.sqrt(area * aspect)).long(), torch.round(torch.sqrt(area / aspect)).long()
        if swap:
            w, h = h, w
        if strict:
            fits = (w > 0) & (w < width) & (h > 0) & (h < height)
        elif zero_fits:
            fits = (w <= width) & (h <= height)
        else:
            fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        return h, w, fits

    return fn


@pytest.mark.parametrize("slip, words", [
    ({}, None),
    ({"swap": True}, "Your h and w are swapped"),
    ({"uniform_ratio": True}, "must be LOG-uniform"),
    ({"fraction": True}, "`scale` is a fraction of the image"),
    ({"strict": True}, "a crop as large as the image fits"),
    ({"zero_fits": True}, "one that rounds to 0 pixels does not"),
    ({"dtype": torch.float32}, "Do the maths in float64"),
], ids=["right", "swapped", "uniform-ratio", "area-fraction", "strict-fit", "zero-fits", "float32"])
def test_each_crop_sizes_slip_gets_its_message(slip, words, capsys):
    fn = _sizes_with(**slip)
    if words is None:
        checks.check_crop_sizes(fn)
        assert capsys.readouterr().out.startswith("✓ crop_sizes:")
    else:
        _fails(checks.check_crop_sizes, fn, "crop_sizes: Case", words)


def test_crop_sizes_as_floats_is_a_dtype_problem():
    def floats(u, height, width, scale, ratio):
        h, w, fits = crop_sizes_from_uniforms(u, height, width, scale, ratio)
        return h.double(), w.double(), fits

    _fails(checks.check_crop_sizes, floats, "output 0: wrong dtype: got torch.float64, expected torch.int64")


# ---- classic bugs of batched_flip ----------------------------------------------------------------


def test_batched_flip_upside_down_is_wrong():
    def upside_down(x, flip):
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-2), x)

    _fails(checks.check_batched_flip, upside_down, "wrong values")


# ---- classic bugs of batched_colour_jitter -------------------------------------------------------


def _gray(y):
    return 0.2989 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3]


def _jitter_with(*, shared=False, batch_mean=False, clamp="each", order=(0, 1, 2)):
    """A learner's batched_colour_jitter with one classic slip switched on."""
    def fn(x, factors):
        f = factors[:1].expand_as(factors) if shared else factors
        per_image = [f[:, k].view(-1, 1, 1, 1) for k in range(3)]
        clip = (lambda y: y.clamp(0, 1)) if clamp == "each" else (lambda y: y)
        for k in order:
            a = per_image[k]
            if k == 0:
                x = clip(a * x)
            elif k == 1:
                mean = _gray(x).mean() if batch_mean else _gray(x).mean(dim=(1, 2, 3), keepdim=True)
                x = clip(a * x + (1 - a) * mean)
            else:
                x = clip(a * x + (1 - a) * _gray(x))
        return x.clamp(0, 1) if clamp == "end" else x

    return fn


@pytest.mark.parametrize("slip, words", [
    ({}, None),
    ({"shared": True}, "Every image got the factors of image 0"),
    ({"batch_mean": True}, "depends on the other images of the batch"),
    ({"clamp": "never"}, "Values leave [0, 1]"),
    ({"clamp": "end"}, "You clamp only once, at the end"),
    ({"order": (2, 1, 0)}, "in the order saturation, contrast, brightness"),
], ids=["right", "shared-factor", "batch-mean", "no-clamp", "clamp-at-end", "order"])
def test_each_colour_jitter_slip_gets_its_message(slip, words, capsys):
    fn = _jitter_with(**slip)
    if words is None:
        checks.check_batched_colour_jitter(fn)
        assert capsys.readouterr().out.startswith("✓ batched_colour_jitter:")
    else:
        _fails(checks.check_batched_colour_jitter, fn, "batched_colour_jitter: Case", words)


def test_colour_jitter_in_float64_is_a_dtype_problem():
    right = _jitter_with()
    _fails(checks.check_batched_colour_jitter, lambda x, f: right(x.double(), f.double()),
           "wrong dtype: got torch.float64, expected torch.float32")


# ---- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("check", [checks.check_crop_sizes, checks.check_batched_flip,
                                   checks.check_batched_colour_jitter])
def test_a_non_function_is_refused(check):
    _fails(check, "my_function", "expected a function, got str")


def test_crop_sizes_returning_boxes_is_told_to_return_three_values():
    _fails(checks.check_crop_sizes, lambda u, height, width, scale, ratio: torch.zeros(len(u), 4, dtype=torch.long),
           "expected 3")


@pytest.mark.parametrize("answers, words", [
    ({1: "b", 2: "a", 3: 4 / 7, 4: 0.45}, "no answer to question(s) [5]"),
    ({1: "a", 2: "a", 3: 4 / 7, 4: 0.45, 5: "c"}, "question 1: not 'a'"),
    ({1: "b", 2: "a", 3: 0.5, 4: 0.45, 5: "c"}, "question 3: 0.5 is not it: the ratio is above 1"),
    ({1: "b", 2: "a", 3: 4 / 7, 4: 20 * 80 / 3 / 1200, 5: "c"}, "question 4: 0.444"),
    ({1: "b", 2: "a", 3: "4/7", 4: 0.45, 5: "c"}, "question 3: answer with a number"),
    ({1: "b", 2: "d", 3: 4 / 7, 4: 0.45, 5: "c"}, "question 2: answer with one letter among ['a', 'b', 'c']"),
    ([1, 2, 3], "expected a dict"),
], ids=["missing", "wrong-letter", "log-uniform-half", "unrounded-width", "string-number", "unknown-letter", "list"])
def test_the_self_check_says_what_is_wrong(answers, words):
    _fails(checks.check_self_check_02, answers, words)
