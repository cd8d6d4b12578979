"""SimCLR views: batched version vs the torchvision reference (values given the same parameters,
parameter distributions statistically), range, determinism, errors, devices."""

import math

import pytest
import torch
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from course_lib.contrastive.colour import adjust_hue, colour_jitter, yiq_hue_matrix
from course_lib.contrastive.views import (ViewConfig, apply_view_params, batched_flip, crop_flip_grid, draw_view_params,
                                          random_resized_crop_params, reference_views, simclr_views)

OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _images(n, h=32, w=32, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_colour_jitter_equals_torchvision_given_same_parameters():
    x = _images(24).float() / 255
    p = draw_view_params(24, 32, 32, ViewConfig(jitter_p=0.9), torch.Generator().manual_seed(1))
    got = colour_jitter(x, p["factors"], p["order"], p["jitter"])
    for b in range(24):
        want = x[b]
        if p["jitter"][b]:
            for op in p["order"][b].tolist():
                want = OPS[op](want, p["factors"][b, op].item())
        torch.testing.assert_close(got[b], want, atol=2e-5, rtol=0)
    assert p["jitter"].sum() not in (0, 24)  # both branches exercised


def _torchvision_view(img, p, b, size=32):
    """One view by torchvision's functional ops with the parameters p drawn for image b."""
    top, left, h, w = p["boxes"][b].tolist()
    out = TF.resized_crop(img, top, left, h, w, [size, size], antialias=True)
    out = TF.horizontal_flip(out) if p["flip"][b] else out
    if p["jitter"][b]:
        for op in p["order"][b].tolist():
            out = OPS[op](out, p["factors"][b, op].item())
    return TF.rgb_to_grayscale(out, num_output_channels=3) if p["gray"][b] else out


def test_exact_impl_equals_torchvision_view_by_view():
    x = _images(32)
    p = draw_view_params(32, 32, 32, ViewConfig(), torch.Generator().manual_seed(13))
    got = apply_view_params(x, p, 32, impl="exact")
    for b in range(32):
        torch.testing.assert_close(got[b], _torchvision_view(x[b].float() / 255, p, b), atol=5e-5, rtol=0)


def test_fused_equals_exact_when_nothing_clamps_and_hue_is_zero():
    x = (0.4 + 0.2 * torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(14)))  # mid-range: no clamping
    cfg = ViewConfig(jitter=(0.3, 0.3, 0.3, 0.0))
    p = draw_view_params(32, 32, 32, cfg, torch.Generator().manual_seed(15))
    torch.testing.assert_close(apply_view_params(x, p, 32, "fused"), apply_view_params(x, p, 32, "exact"),
                               atol=1e-5, rtol=0)


def test_fused_view_stays_close_to_torchvision_on_real_looking_images():
    x = _images(64)
    p = draw_view_params(64, 32, 32, ViewConfig(), torch.Generator().manual_seed(16))
    fused, exact = apply_view_params(x, p, 32, "fused"), apply_view_params(x, p, 32, "exact")
    gap = (fused - exact).abs().mean(dim=(1, 2, 3))
    assert gap.median() < 0.05, "fused views should differ from torchvision's only where clamps or hue differ"


def test_yiq_hue_keeps_luma_turns_like_hsv_and_is_identity_at_zero():
    m = yiq_hue_matrix(torch.tensor([0.0, 0.1, -0.1, 0.5]))
    torch.testing.assert_close(m[0], torch.eye(3), atol=1e-6, rtol=0)
    luma = torch.tensor([0.299, 0.587, 0.114])
    torch.testing.assert_close(luma @ m, luma.expand(4, 3), atol=1e-5, rtol=0)  # gray level unchanged
    red = torch.tensor([0.8, 0.2, 0.2])
    assert (m[1] @ red)[1] > red[1] and (m[2] @ red)[2] > red[2]  # +hue: red towards yellow; -hue: towards magenta
    x = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(17)) * 0.5 + 0.25
    hue = torch.full((8,), 0.05)
    yiq = (yiq_hue_matrix(hue) @ x.view(8, 3, 36)).view_as(x).clamp(0, 1)
    assert (yiq - adjust_hue(x, hue)).abs().mean() < 0.03


def test_hue_equals_torchvision_on_saturated_and_gray_pixels():
    x = torch.rand(6, 3, 9, 11, generator=torch.Generator().manual_seed(2))
    x[:, :, 0] = x[:, :1, 0]  # a gray row (hue undefined) and pure primaries
    x[0, :, 1, :3] = torch.eye(3)
    hue = torch.tensor([-0.5, -0.1, 0.0, 0.05, 0.3, 0.5])
    got = adjust_hue(x, hue)
    for b in range(6):
        torch.testing.assert_close(got[b], TF.adjust_hue(x[b], hue[b].item()), atol=2e-5, rtol=0)


@pytest.mark.parametrize("hw", [(32, 32), (20, 36)])
def test_crop_flip_grid_equals_resized_crop_then_flip(hw):
    h, w = hw
    x = _images(16, h, w).float() / 255
    gen = torch.Generator().manual_seed(3)
    boxes = random_resized_crop_params(16, h, w, generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    got = torch.nn.functional.grid_sample(x, crop_flip_grid(boxes, flip, h, w, 32), align_corners=False,
                                          padding_mode="border")
    for b in range(16):
        top, left, bh, bw = boxes[b].tolist()
        want = TF.resized_crop(x[b], top, left, bh, bw, [32, 32], antialias=True)
        want = TF.horizontal_flip(want) if flip[b] else want
        torch.testing.assert_close(got[b], want, atol=1e-5, rtol=0)


def test_crop_parameter_distribution_matches_torchvision():
    n = 4000
    ours = random_resized_crop_params(n, 32, 32, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(4)
    rrc = v2.RandomResizedCrop(32, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    ref = torch.tensor([[p["top"], p["left"], p["height"], p["width"]]
                        for p in (rrc.make_params([torch.zeros(3, 32, 32)]) for _ in range(n))])
    for name, f in (("area", lambda b: b[:, 2] * b[:, 3] / 1024.0), ("aspect", lambda b: b[:, 3] / b[:, 2]),
                    ("top", lambda b: b[:, 0].double()), ("left", lambda b: b[:, 1].double())):
        p_value = stats.ks_2samp(f(ours).numpy(), f(ref).numpy()).pvalue
        assert p_value > 1e-3, f"crop {name} distribution differs from torchvision's (KS p = {p_value:.2g})"
    area, aspect = ours[:, 2] * ours[:, 3] / 1024.0, ours[:, 3] / ours[:, 2]
    assert area.min() >= 0.06 and area.max() <= 1.0  # 0.08 up to rounding of w and h
    assert aspect.min() >= 0.7 and aspect.max() <= 1.43
    assert (ours[:, 0] + ours[:, 2] <= 32).all() and (ours[:, 1] + ours[:, 3] <= 32).all()


def _rates(views_fn, x, n_seed):
    """Measured flip, jitter and gray rates of a pipeline, each with the other augmentations switched off."""
    gen = torch.Generator().manual_seed(n_seed)
    base = x.float() / 255
    flip = views_fn(x, ViewConfig(crop=False, color=False, gray=False), gen)
    jit = views_fn(x, ViewConfig(crop=False, flip=False, gray=False), gen)
    gray = views_fn(x, ViewConfig(crop=False, flip=False, color=False), gen)
    flipped = (flip - base.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-6
    jittered = (jit - base).abs().amax(dim=(1, 2, 3)) > 1e-6
    grayed = (gray[:, 0] == gray[:, 1]).all(dim=(1, 2)) & (gray[:, 1] == gray[:, 2]).all(dim=(1, 2))
    return flipped.double().mean().item(), jittered.double().mean().item(), grayed.double().mean().item()


def test_flip_jitter_gray_rates_match_reference_and_config():
    n = 1500
    x = _images(n, seed=5)
    ours, ref = _rates(simclr_views, x, 6), _rates(reference_views, x, 7)
    assert _rates(lambda *a: simclr_views(*a, impl="exact"), x[:500], 6)[2] > 0.1  # exact gray is exact too
    for name, p, a, b in zip(("flip", "jitter", "gray"), (0.5, 0.8, 0.2), ours, ref):
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(a - p) < 5 * sigma, f"batched {name} rate {a:.3f}, expected {p}"
        assert abs(b - p) < 5 * sigma, f"reference {name} rate {b:.3f}, expected {p}"


def test_jitter_factor_and_order_distributions():
    cfg = ViewConfig()
    p = draw_view_params(20000, 32, 32, cfg, torch.Generator().manual_seed(8))
    f = p["factors"]
    for k, (lo, hi) in enumerate([(0.6, 1.4)] * 3 + [(-0.1, 0.1)]):
        assert f[:, k].min() >= lo and f[:, k].max() <= hi
        assert stats.kstest(((f[:, k] - lo) / (hi - lo)).numpy(), "uniform").pvalue > 1e-3
    first = torch.bincount(p["order"][:, 0], minlength=4) / 20000.0  # each op goes first 1/4 of the time
    assert (first - 0.25).abs().max() < 0.02
    assert (p["order"].sort(dim=1).values == torch.arange(4)).all()  # each row is a permutation


def test_outputs_in_range_shape_and_dtype():
    for x in (_images(10), _images(10).float() / 255, _images(3, 40, 24).double() / 255):
        v = simclr_views(x, generator=torch.Generator().manual_seed(0))
        assert v.shape == (x.shape[0], 3, 32, 32) and v.dtype == torch.float32
        assert v.min() >= 0 and v.max() <= 1 and torch.isfinite(v).all()
    assert simclr_views(_images(4), ViewConfig(size=16)).shape == (4, 3, 16, 16)
    assert simclr_views(_images(0)).shape == (0, 3, 32, 32)


@pytest.mark.parametrize("impl", ["fused", "exact"])
def test_uint8_and_float_inputs_give_the_same_views(impl):
    x = _images(12)
    a = simclr_views(x, generator=torch.Generator().manual_seed(9), impl=impl)
    b = simclr_views(x.float() / 255, generator=torch.Generator().manual_seed(9), impl=impl)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="'fused' or 'exact'"):
        simclr_views(x, impl="triton")


def test_deterministic_under_a_seed_and_two_calls_differ():
    x = _images(16)
    for fn in (simclr_views, reference_views):
        a = fn(x, generator=torch.Generator().manual_seed(10))
        b = fn(x, generator=torch.Generator().manual_seed(10))
        assert torch.equal(a, b), fn.__name__
        gen = torch.Generator().manual_seed(10)
        assert not torch.equal(fn(x, generator=gen), fn(x, generator=gen)), fn.__name__


def test_reference_with_generator_leaves_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    reference_views(_images(4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.rand(3), expected)


def test_everything_off_is_the_identity():
    x = _images(8)
    cfg = ViewConfig(crop=False, flip=False, color=False, gray=False)
    torch.testing.assert_close(simclr_views(x, cfg), x.float() / 255)
    torch.testing.assert_close(simclr_views(x, cfg, impl="exact"), x.float() / 255)
    torch.testing.assert_close(reference_views(x, cfg), x.float() / 255)


def test_strength_scales_jitter_ranges():
    p = draw_view_params(5000, 32, 32, ViewConfig(strength=2.0), torch.Generator().manual_seed(11))
    assert 0.2 <= p["factors"][:, 0].min() < 0.22 and 1.78 < p["factors"][:, 0].max() <= 1.8  # U(1 - 0.8, 1 + 0.8)
    assert p["factors"][:, 3].abs().max() > 0.18  # hue up to 0.2


def test_batched_flip_flips_only_flagged_images():
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    out = batched_flip(x, torch.tensor([True, False]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])


@pytest.mark.parametrize("bad, error, words", [
    (torch.zeros(2, 3, 8, 8, dtype=torch.int32), TypeError, "uint8"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), ValueError, "(B, 3, H, W)"),
    (torch.zeros(2, 1, 8, 8), ValueError, "(B, 3, H, W)"),
    (torch.full((2, 3, 8, 8), 255.0), ValueError, "[0, 1]"),
    ([[0.0]], TypeError, "torch.Tensor"),
])
def test_bad_inputs_say_what_was_expected(bad, error, words):
    for fn in (simclr_views, reference_views):
        with pytest.raises(error, match=__import__("re").escape(words)):
            fn(bad)


def test_without_a_generator_the_global_rng_on_the_images_device_is_used():
    x = _images(8)
    torch.manual_seed(21)
    a = simclr_views(x)
    torch.manual_seed(21)
    assert torch.equal(simclr_views(x), a)
    p = draw_view_params(5, 32, 32, device="cpu")
    assert all(v.device.type == "cpu" for v in p.values()) and p["factors"].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_views_of_uint8_images_never_wait_for_the_gpu():
    """With the data and the generator on the GPU, a call queues work and returns: no sync, no host copy."""
    x = _images(64).cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    simclr_views(x, generator=gen)  # warm-up: one-time constants and kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        views = simclr_views(x, generator=gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert views.device == x.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_given_the_same_parameters():
    x = _images(64)
    p = draw_view_params(64, 32, 32, ViewConfig(), torch.Generator().manual_seed(12))
    for impl in ("fused", "exact"):
        cpu = apply_view_params(x, p, 32, impl)
        gpu = apply_view_params(x.cuda(), p, 32, impl)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
    views = simclr_views(x.cuda(), generator=torch.Generator(device="cuda").manual_seed(0))
    assert views.device.type == "cuda" and views.min() >= 0 and views.max() <= 1


def test_view_explorer_controls_change_the_config_and_draw():
    pytest.importorskip("ipywidgets")
    from course_lib.explore.views import ViewExplorer, view_pairs_figure
    from course_lib.lessons import VIEWS_LESSON_PRESETS

    explorer = ViewExplorer(_images(4), seed=3)
    explorer.switches["color"].value = False  # what a click on the checkbox does
    explorer.sliders["min_scale"].value = 0.5
    assert explorer.config.color is False and explorer.config.scale == (0.5, 1.0)
    explorer.resample()
    assert explorer.seed == 4
    fig = explorer.draw()
    assert len(fig.axes) == 12  # 3 rows (image, view 1, view 2) x 4 images
    assert len(view_pairs_figure(_images(2)).axes) == 6
    assert set(VIEWS_LESSON_PRESETS) == {"smoke", "laptop", "full"}
    with pytest.raises(ValueError, match="1 to 16 images"):
        ViewExplorer(_images(20))


@pytest.mark.parametrize("kwargs, words", [
    (dict(size=0), "size must be a whole number"),
    (dict(scale=(1.0, 0.2)), "scale must be a range"),
    (dict(ratio=(0.0, 1.0)), "ratio must be a range"),
    (dict(flip_p=2.0), "flip_p is a probability"),
    (dict(gray_p=-0.1), "gray_p is a probability"),
    (dict(jitter=(-0.4, 0.4, 0.4, 0.1)), "jitter strengths must be >= 0"),
])
def test_an_impossible_view_config_is_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ViewConfig(**kwargs)


def test_images_with_nan_are_refused_not_augmented():
    x = torch.rand(4, 3, 8, 8)
    x[2, 1, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        simclr_views(x)


def test_notebook_02_times_no_more_images_than_its_test_split_holds():
    """Its timing slices the 10,000 test images: a larger n_batched timed empty batches and overstated the rate."""
    from course_lib.lessons import VIEWS_LESSON_PRESETS

    for tier, cfg in VIEWS_LESSON_PRESETS.items():
        assert cfg.n_batched <= 10_000 and cfg.n_reference <= 10_000, tier


def test_seeded_reference_views_leave_every_gpu_generator_alone(monkeypatch):
    """fork_rng(devices=[]) forks the CPU generator only, so a torch.manual_seed inside it reseeded the GPUs."""
    from course_lib.checks.meta_updates import _model

    def reseeds_gpus(seed):
        raise AssertionError("the global CUDA generators were reseeded")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeds_gpus)
    x = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    before = torch.get_rng_state()
    reference_views(x, ViewConfig(size=8), generator=torch.Generator().manual_seed(0))
    _model(3)
    assert torch.equal(torch.get_rng_state(), before)
