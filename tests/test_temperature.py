"""course_lib.explore.temperature: the softmax over candidates and the push on each negative."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from course_lib.explore.temperature import (T_READOUT, TemperatureExplorer, example_similarities, format_temperature,
                                           temperature_stats)

matplotlib.use("Agg")


def test_stats_match_the_gradient_of_the_loss():
    positive, negatives = example_similarities(16)
    sims = torch.cat([torch.tensor([positive]), negatives]).double().requires_grad_(True)
    loss = -torch.log_softmax(sims / 0.2, dim=0)[0]
    loss.backward()
    stats = temperature_stats(positive, negatives, 0.2)
    assert stats.probs.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert stats.loss == pytest.approx(loss.item(), rel=1e-6)
    torch.testing.assert_close(stats.neg_weights.double(), sims.grad[1:], rtol=1e-5, atol=1e-7)  # dL/ds_k = p_k / t


def test_small_temperature_concentrates_the_push_on_hard_negatives():
    positive, negatives = example_similarities(64)
    cold, warm, hot = (temperature_stats(positive, negatives, t) for t in (0.05, 0.2, 100.0))
    assert cold.hard_share > warm.hard_share > hot.hard_share
    assert cold.effective_negatives < warm.effective_negatives < hot.effective_negatives
    assert hot.effective_negatives == pytest.approx(64, rel=0.01)  # t -> inf: every negative counts the same


def test_stable_at_tiny_temperature_and_validates():
    positive, negatives = example_similarities(8)
    stats = temperature_stats(positive, negatives, 1e-4)
    assert torch.isfinite(stats.probs).all() and torch.isfinite(stats.neg_weights).all()
    with pytest.raises(ValueError, match="temperature"):
        temperature_stats(positive, negatives, 0.0)
    with pytest.raises(ValueError, match="1-D"):
        temperature_stats(positive, negatives[None], 0.1)


def test_explorer_draws_one_row_per_temperature_and_keeps_its_stats():
    explorer = TemperatureExplorer(temperatures=(0.1, 1.0))
    stats = explorer.stats
    assert len(stats) == 2 and stats[0].hard_share > stats[1].hard_share
    assert len(explorer.draw().axes) == 4  # two panels per row
    explorer.sliders[1].value = 0.05  # what the second slider does
    assert explorer.temperatures == (0.1, 0.05) and explorer.stats[1].hard_share > stats[0].hard_share
    explorer.set(0, 2.0)
    assert explorer.temperatures == (2.0, 0.05) and explorer.sliders[0].value == pytest.approx(2.0)
    with pytest.raises(ValueError, match="outside the sliders' range"):
        explorer.set(0, 50.0)
    with pytest.raises(ValueError, match="temperature"):
        TemperatureExplorer(temperatures=(0.1, 0.0))


def test_explorer_keeps_a_given_positive_with_the_default_negatives():
    stats = TemperatureExplorer(positive=0.95, temperatures=(0.5,)).stats
    _, negatives = example_similarities()
    assert stats[0].loss == pytest.approx(temperature_stats(0.95, negatives, 0.5).loss)
    assert stats[0].loss < temperature_stats(0.7, negatives, 0.5).loss  # an easier positive: a lower loss


def _d3_g(value: float, digits: int) -> str:
    """What the slider's readout (d3-format ".{digits}g") shows in the browser for a value in [1e-6, 10 ** digits):
    JavaScript's value.toPrecision(digits), which rounds to `digits` significant digits and keeps trailing zeros."""
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    figures, exponent = mantissa.replace(".", ""), int(exponent)
    if exponent < 0:
        return "0." + "0" * (-exponent - 1) + figures
    whole, fraction = figures[:exponent + 1], figures[exponent + 1:]
    return whole + ("." + fraction if fraction else "")


def test_titles_show_the_temperature_as_the_slider_readout_does():
    explorer = TemperatureExplorer(temperatures=(0.223872, 0.05, 1.0))
    assert all(slider.readout_format == T_READOUT == ".3g" for slider in explorer.sliders)
    titles = [ax.get_title() for ax in explorer.draw().axes[::2]]  # the left panel of each row
    assert [t.split(":")[0] for t in titles] == ["t = 0.224", "t = 0.0500", "t = 1.00"]
    slider = explorer.sliders[0]
    steps = round((slider.max - slider.min) / slider.step)
    for value in (10 ** (slider.min + i * slider.step) for i in range(steps + 1)):  # every position of the slider
        assert format_temperature(value) == _d3_g(value, 3), value
    assert _d3_g(0.09999, 3) == "0.100" and _d3_g(12.345, 3) == "12.3"  # the emulation itself, by hand
