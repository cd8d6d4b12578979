"""Evaluation: weighted kNN against a hand computation, the frozen backbone of the linear probe."""

import math

import pytest
import torch

from course_lib.contrastive.evaluate import (extract_features, knn_accuracy, linear_probe, raw_pixel_features,
                                             weighted_knn)
from course_lib.contrastive.models import SmallCNN


def test_weighted_knn_matches_a_hand_computed_answer():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    test = torch.tensor([[2.0, 0.0]])   # cosines: 1, 0, 1/sqrt(2), -1
    scores = weighted_knn(train, labels, test, k=3, temperature=0.5)
    s = 1 / math.sqrt(2)
    want = torch.tensor([[math.exp(1 / 0.5), math.exp(s / 0.5) + math.exp(0.0), 0.0]])  # 3 nearest: rows 0, 2, 1
    torch.testing.assert_close(scores, want)
    # k=1: only the nearest neighbour votes
    assert weighted_knn(train, labels, test, k=1, temperature=0.1).argmax(1).item() == 0


def test_weighted_knn_equals_a_per_image_loop_and_batches_agree():
    gen = torch.Generator().manual_seed(0)
    train, test = torch.randn(50, 6, generator=gen), torch.randn(13, 6, generator=gen)
    labels = torch.randint(0, 4, (50,), generator=gen)
    got = weighted_knn(train, labels, test, k=7, temperature=0.2, batch_size=5)
    tn, qn = torch.nn.functional.normalize(train, dim=1), torch.nn.functional.normalize(test, dim=1)
    for i in range(13):
        sim = tn @ qn[i]
        top = sim.topk(7).indices
        want = torch.zeros(4)
        for j in top:
            want[labels[j]] += torch.exp(sim[j] / 0.2)
        torch.testing.assert_close(got[i], want)


def test_knn_accuracy_on_separated_clusters_and_bad_k():
    gen = torch.Generator().manual_seed(1)
    centres = torch.eye(3) * 10
    ytr, yte = torch.arange(3).repeat(20), torch.arange(3).repeat(5)
    xtr = centres[ytr] + torch.randn(60, 3, generator=gen)
    xte = centres[yte] + torch.randn(15, 3, generator=gen)
    assert knn_accuracy(xtr, ytr, xte, yte, k=10) == knn_accuracy(xtr, ytr, xte, yte, k=60) == 1.0
    # k beyond N (60 training rows) is an error in both, with the same message saying how to use all of them
    for bad_k in (61, 200, 0):
        for fn in (lambda: weighted_knn(xtr, ytr, xte, k=bad_k), lambda: knn_accuracy(xtr, ytr, xte, yte, k=bad_k)):
            with pytest.raises(ValueError, match=r"k must be between 1 and the number of training features N = 60.*k=min\(k, 60\)"):
                fn()


def test_linear_probe_never_sends_a_gradient_to_the_encoder():
    torch.manual_seed(0)
    encoder = SmallCNN(width=4)
    encoder.train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    touched = []
    for p in encoder.parameters():
        p.register_hook(lambda g: touched.append(g))
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(4).repeat(10)
    h = extract_features(encoder, images)
    assert not h.requires_grad and h.shape == (40, 32)
    assert encoder.training                                       # mode restored
    probe = linear_probe(h, labels, h[:8], labels[:8], steps=5)
    assert touched == []                                          # no hook fired: no gradient reached the encoder
    assert all(p.grad is None for p in encoder.parameters())
    for k, v in encoder.state_dict().items():                     # weights and BatchNorm statistics unchanged
        assert torch.equal(v, before[k]), k
    assert 0.0 <= probe.test_accuracy <= 1.0


def test_linear_probe_learns_a_separable_problem():
    gen = torch.Generator().manual_seed(2)
    y = torch.arange(4).repeat(50)
    x = torch.randn(200, 16, generator=gen) + 5 * torch.nn.functional.one_hot(y, 16).float()
    result = linear_probe(x[:150], y[:150], x[150:], y[150:])
    assert result.test_accuracy > 0.9 and result.train_accuracy > 0.9


def test_raw_pixel_features_and_resize():
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    f = raw_pixel_features(x, size=16)
    assert f.shape == (3, 3 * 16 * 16)
    torch.testing.assert_close(f.mean(1), torch.zeros(3), atol=1e-6, rtol=0)
    assert extract_features(SmallCNN(4), x, size=16).shape == (3, 32)


def test_features_with_nan_and_unscaled_float_images_are_refused():
    feats, labels = torch.randn(20, 4), torch.arange(20) % 2
    bad = feats.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="train_features contain NaN"):
        knn_accuracy(bad, labels, feats, labels, k=5)
    with pytest.raises(ValueError, match="test_features contain NaN"):
        weighted_knn(feats, labels, bad, k=5)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    with pytest.raises(ValueError, match="divide uint8-range floats by 255"):
        extract_features(encoder, torch.rand(5, 3, 4, 4) * 255)  # floats in 0..255: other features, silently
