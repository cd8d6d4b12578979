"""course_lib.explore.temperature: the softmax over candidates and the push on each negative."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from course_lib.explore.temperature import example_similarities, temperature_explorer, temperature_stats

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


def test_explorer_draws_a_static_figure_and_returns_its_stats():
    stats = temperature_explorer(temperatures=(0.1, 1.0))
    assert len(stats) == 2 and stats[0].hard_share > stats[1].hard_share


def test_explorer_keeps_a_given_positive_with_the_default_negatives():
    stats = temperature_explorer(positive=0.95, temperatures=(0.5,))
    _, negatives = example_similarities()
    assert stats[0].loss == pytest.approx(temperature_stats(0.95, negatives, 0.5).loss)
    assert stats[0].loss < temperature_stats(0.7, negatives, 0.5).loss  # an easier positive: a lower loss
