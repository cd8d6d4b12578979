"""Bad input across the public API, as a careless learner would give it: every row must raise the named error
type, with a message that names what is wrong (the argument) and what to do (the remedy).

Files that are damaged or tampered with are tried in tests/test_data.py (they need fixtures on disk); a
checkpoint of another config or network in tests/test_training.py.
"""

from __future__ import annotations

import pytest
import torch

from course_lib import runtime
from course_lib.checkpoint import CheckpointError, load_checkpoint
from course_lib.checks import UnknownExercise, check
from course_lib.contrastive.evaluate import extract_features, knn_accuracy, weighted_knn
from course_lib.contrastive.losses import info_nce, nt_xent
from course_lib.contrastive.simclr import PRESETS, build_model, train_simclr
from course_lib.contrastive.views import ViewConfig, simclr_views
from course_lib.data import DataNotFoundError, load_cifar10, sample_episodes
from course_lib.meta import MetaConfig, meta_loss, reptile_direction
from course_lib.meta.protonet import protonet_loss
from course_lib.meta.models import Conv4
from course_lib.training import TrainingRun
from course_lib.tsne import tsne


def _nan(shape):
    x = torch.randn(*shape)
    x.view(-1)[1] = float("nan")
    return x


def _episodes():
    return sample_episodes(torch.rand(6, 20, 1, 28, 28), 3, 1, 2, 2)


def _relabel(y_support: int = 0, y_query: int = 0, scale: int = 1):
    """3-way episodes with shifted (or scaled) labels."""
    ep = _episodes()
    return ep._replace(y_support=ep.y_support * scale + y_support, y_query=ep.y_query * scale + y_query)


SMALL = PRESETS["smoke"]
CASES = [
    # (name, call, error type, [words the message must contain: the argument, then the remedy])
    ("odd number of views", lambda: nt_xent(torch.randn(7, 4)), ValueError, ["2N rows", "torch.cat([z1, z2])"]),
    ("temperature 0", lambda: nt_xent(torch.randn(4, 4), 0.0), ValueError, ["temperature", "Typical values"]),
    ("NaN embeddings", lambda: nt_xent(_nan((4, 4))), ValueError, ["NaN", "lower the learning rate"]),
    ("3-D embeddings", lambda: nt_xent(torch.randn(4, 2, 2)), ValueError, ["2-D", "view(len(z), -1)"]),
    ("mismatched InfoNCE pairs", lambda: info_nce(torch.randn(4, 3), torch.randn(5, 3)), ValueError,
     ["same shape", "same image"]),
    ("one image without a batch dimension", lambda: simclr_views(torch.rand(3, 8, 8)), ValueError,
     ["(B, 3, H, W)", "x[None]"]),
    ("float images in 0..255", lambda: simclr_views(torch.rand(2, 3, 8, 8) * 255), ValueError,
     ["[0, 1]", "divide uint8-range floats by 255"]),
    ("NaN images", lambda: simclr_views(_nan((2, 3, 8, 8)).clamp(0, 1)), ValueError, ["[0, 1]", "NaN"]),
    ("view size 0", lambda: ViewConfig(size=0), ValueError, ["size", ">= 1"]),
    ("reversed crop scale", lambda: ViewConfig(scale=(0.9, 0.1)), ValueError, ["scale", "low <= high"]),
    ("no query examples", lambda: sample_episodes(torch.rand(6, 20, 1, 8, 8), 3, 1, 0, 2), ValueError,
     ["n_query", ">= 1"]),
    ("more ways than classes", lambda: sample_episodes(torch.rand(6, 20, 1, 8, 8), 9, 1, 1, 2), ValueError,
     ["n_way=9", "fewer ways"]),
    ("NaN meta_lr", lambda: MetaConfig(meta_lr=float("nan")), ValueError, ["meta_lr", "finite number > 0"]),
    ("no inner step", lambda: meta_loss(Conv4(3, 4), _episodes(), inner_lr=0.4, inner_steps=0), ValueError,
     ["inner_steps", "at least one SGD step"]),
    ("support labels beyond the head", lambda: meta_loss(Conv4(3, 4), _relabel(y_support=5), inner_lr=0.4, inner_steps=1),
     ValueError, ["y_support holds labels 5..7", "label each task's classes 0..N-1"]),
    ("negative query labels", lambda: meta_loss(Conv4(3, 4), _relabel(y_query=-1), inner_lr=0.4, inner_steps=1),
     ValueError, ["y_query holds labels -1..1", "as many outputs as classes"]),
    ("Reptile with labels beyond the head", lambda: reptile_direction(Conv4(3, 4), _relabel(y_support=5), inner_lr=0.4,
                                                                       inner_steps=1), ValueError, ["y_support", "0..N-1"]),
    ("a query class without support", lambda: protonet_loss(Conv4(None, 4), _relabel(y_query=3)), ValueError,
     ["y_query holds labels 3..5", "0..N-1"]),
    ("a class missing from a support set", lambda: protonet_loss(Conv4(None, 4), _relabel(scale=2)), ValueError,
     ["no example of class 1", "0..N-1"]),
    ("k above the training set", lambda: weighted_knn(torch.randn(5, 3), torch.arange(5), torch.randn(2, 3), k=9),
     ValueError, ["k must be between 1", "k=min(k, 5)"]),
    ("k above the training set, accuracy", lambda: knn_accuracy(torch.randn(5, 3), torch.arange(5), torch.randn(2, 3),
                                                                  torch.arange(2), k=9), ValueError, ["k must", "k=min"]),
    ("NaN features", lambda: knn_accuracy(_nan((6, 3)), torch.arange(6) % 2, torch.randn(2, 3), torch.arange(2), k=3),
     ValueError, ["train_features contain NaN", "last good checkpoint"]),
    ("features of unscaled floats", lambda: extract_features(torch.nn.Linear(1, 1), torch.rand(2, 3, 4, 4) * 255),
     ValueError, ["[0, 1]", "divide uint8-range floats by 255"]),
    ("t-SNE of a 1-D tensor", lambda: tsne(torch.randn(50)), ValueError, ["(N, D)", "reshape"]),
    ("t-SNE perplexity too high", lambda: tsne(torch.randn(20, 3), perplexity=30), ValueError,
     ["3 x perplexity", "perplexity of at most 6"]),
    ("SimCLR on float images", lambda: train_simclr(build_model(SMALL), torch.rand(8, 3, 8, 8), SMALL, progress=False),
     ValueError, ["images must be uint8", "(N, 3, H, W)"]),
    ("SimCLR on less than a batch", lambda: train_simclr(build_model(SMALL), torch.zeros(8, 3, 8, 8, dtype=torch.uint8),
                                                         SMALL, progress=False), ValueError, ["less than one batch", "lower batch_size"]),
    ("a run of 0 steps", lambda: TrainingRun(lambda s: {}, model=torch.nn.Linear(1, 1), optimizer=None, generators=[],
                                            steps=0, lr=lambda s, t: 0.1, kind="x"), ValueError, ["steps", ">= 1"]),
    ("Conv-4 with one class", lambda: Conv4(n_way=1), ValueError, ["n_way", "None for a feature extractor"]),
    ("unknown exercise", lambda: check("nt_xnet", abs), UnknownExercise, ["nt_xnet", "nt_xent"]),
    ("unknown tier", lambda: runtime.pick({t: t for t in runtime.TIERS}, "huge"), ValueError, ["huge", "smoke"]),
    ("negative seed", lambda: runtime.seed_all(-1), ValueError, ["seed", "non-negative int"]),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_an_error_that_names_it_and_says_what_to_do(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_missing_data_and_checkpoints_say_where_they_were_looked_for(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-py.*materialize.py"):
        load_cifar10("train", root=tmp_path, download=False)
    with pytest.raises(CheckpointError, match="no checkpoint at .*start a fresh run"):
        load_checkpoint(tmp_path / "nope.pt", kind="simclr")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable course_lib checkpoint.*delete it"):
        load_checkpoint(tmp_path / "junk.pt", kind="simclr")
