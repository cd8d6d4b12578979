"""How good are frozen features? Weighted kNN, the linear probe, and the baselines to beat.

    h_train = extract_features(encoder, train_images, size=32)       # (N, D) float32, no gradients
    acc = knn_accuracy(h_train, train_labels, h_test, test_labels)   # weighted kNN, k=200, t=0.1
    probe = linear_probe(h_train, train_labels, h_test, test_labels) # logistic regression on frozen h

kNN (Wu et al., 2018; the SimCLR/MoCo monitors): each test feature votes with its k most similar
training features (cosine similarity s), each vote weighted exp(s / t). No training, so it is cheap
enough to run every few epochs, and it sees the geometry of the features directly.
The linear probe trains one linear layer on features that were computed once, under `torch.no_grad`,
from the frozen encoder: no gradient can reach the encoder, by construction.
Baselines: `raw_pixel_features` (the image itself as a vector) and a randomly initialised encoder of
the same architecture (a copy taken before training); self-supervised features are only interesting if
they beat both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib.contrastive.views import check_images
from course_lib.similarity import cosine_topk

KNN_K = 200  # neighbours of the kNN monitor (Wu et al., 2018; SimCLR and MoCo report k = 200)


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    # Bilinear without antialiasing, like the grid_sample resize of the training views, so the encoder
    # sees test images at the same scale and blur as its training views.
    if size is None or x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, size: int | None = None, batch_size: int = 1024,
                     amp: bool | None = None) -> torch.Tensor:
    """Features h of `images` from a frozen encoder: (N, D) float32 on the encoder's device.

    images: (N, 3, H, W) uint8 (or float in [0, 1]) on any device; moved batch by batch. size: resize
    to size x size first (the resolution the encoder was trained at); None keeps H x W. The encoder
    runs in eval mode (BatchNorm uses its running statistics) and is put back in its previous mode.
    amp: bf16 autocast; default on for CUDA.
    """
    check_images(images)  # floats in 0..255 would give other features without a word: refused
    dev = next(encoder.parameters()).device
    amp = dev.type == "cuda" if amp is None else amp
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            # Asynchronous only toward a GPU: a non-blocking copy to the CPU could be read before it lands.
            x = images[start:start + batch_size].to(dev, non_blocking=dev.type == "cuda")
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out.append(encoder(_resize(x, size)).float())
    finally:
        encoder.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, getattr(encoder, "out_dim", 0), device=dev)


def raw_pixel_features(images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """The raw-pixel baseline: (N, 3 * s * s) float32, each image minus its mean, flattened.

    kNN then compares images by the cosine similarity of their (mean-centred) pixels.
    """
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    x = _resize(x, size)
    return (x - x.mean(dim=(1, 2, 3), keepdim=True)).flatten(1)


def _check_k(k: int, n: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of training features N = {n}, got {k}; "
                         f"pass k=min(k, {n}) to vote with all of them.")


def weighted_knn(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 k: int = 200, temperature: float = 0.1, num_classes: int | None = None,
                 batch_size: int = 1024) -> torch.Tensor:
    """Class scores of weighted kNN: (M, C) float32, where C = num_classes (default max label + 1).

    train_features (N, D), train_labels (N,) int64, test_features (M, D): any scale (rows are
    L2-normalised). Each test row's score for class c is the sum of exp(s / temperature) over its
    k nearest training rows of class c, with s the cosine similarity; 1 <= k <= N. The neighbours come
    from `similarity.cosine_topk`, batch_size test rows at a time. Predict with scores.argmax(1).
    """
    n = train_features.shape[0]
    _check_k(k, n)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if train_labels.shape != (n,):
        raise ValueError(f"train_labels must have shape ({n},), one label per training feature, got {tuple(train_labels.shape)}.")
    for name, f in (("train_features", train_features), ("test_features", test_features)):
        if not bool(torch.isfinite(f).all()):  # NaN similarities would still vote, and give a meaningless accuracy
            raise ValueError(f"{name} contain NaN or inf: the encoder that produced them has diverged (or its input "
                             "had NaN). Check the training loss, or evaluate the last good checkpoint.")
    c = int(train_labels.max()) + 1 if num_classes is None else num_classes
    sim, idx = cosine_topk(test_features, train_features, k, batch_size=batch_size)  # (M, k) nearest neighbours
    weights = (sim / temperature).exp()                                               # (M, k) votes, exp(s / t)
    votes = torch.zeros(sim.shape[0], c, device=sim.device)
    return votes.scatter_add_(1, train_labels.to(sim.device)[idx], weights)           # (M, C) votes summed per class


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 200, temperature: float = 0.1) -> float:
    """Top-1 accuracy in [0, 1] of `weighted_knn`; 1 <= k <= N, as there (a smaller training set: k=min(k, N))."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    pred = weighted_knn(train_features, train_labels, test_features, k, temperature, num_classes).argmax(1)
    return (pred.cpu() == test_labels.cpu()).float().mean().item()


@dataclass
class ProbeResult:
    """A trained linear probe: its test top-1 in [0, 1], train top-1, and the layer (on standardised h)."""

    test_accuracy: float
    train_accuracy: float
    classifier: nn.Linear
    mean: torch.Tensor  # (D,) feature mean used to standardise
    std: torch.Tensor   # (D,) feature standard deviation


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, steps: int = 100, weight_decay: float = 1e-4) -> ProbeResult:
    """Fit a linear classifier (multinomial logistic regression) on frozen features (N, D); test top-1.

    Features are detached here, so whatever produced them gets no gradient. They are standardised with
    the training mean and std, and the classifier is fit full-batch with L-BFGS (`steps` iterations, an
    L2 penalty `weight_decay`), as scikit-learn's LogisticRegression does: on cached features that
    converges in a second or two, where minibatch SGD needs minutes on a CPU. Published probes train
    on augmented images for 90+ epochs and gain 1-3 points over this.
    """
    train_features, test_features = train_features.detach().float(), test_features.detach().float()
    dev = train_features.device
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    xtr, xte = (train_features - mean) / std, (test_features.to(dev) - mean) / std
    ytr, yte = train_labels.to(dev), test_labels.to(dev)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    classifier = nn.Linear(xtr.shape[1], num_classes).to(dev)
    with torch.no_grad():  # a deterministic start: the problem is convex, so the start only affects speed
        classifier.weight.zero_()
        classifier.bias.zero_()
    opt = torch.optim.LBFGS(classifier.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(classifier(xtr), ytr) + weight_decay * classifier.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        train_acc = (classifier(xtr).argmax(1) == ytr).float().mean().item()
        test_acc = (classifier(xte).argmax(1) == yte).float().mean().item()
    return ProbeResult(test_acc, train_acc, classifier, mean, std)


__all__ = ["KNN_K", "extract_features", "raw_pixel_features", "weighted_knn", "knn_accuracy", "ProbeResult", "linear_probe"]
