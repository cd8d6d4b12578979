"""Tasks made without labels (UMTRA; Khodadadeh, Bölöni and Shah, NeurIPS 2019).

    sample = umtra_sampler(unlabeled_images, n_way=5, n_query=3)
    tasks = sample(meta_batch, generator)      # Episodes, like sample_episodes' — no label was read

An N-way 1-shot task needs N classes with one support example each and some query examples of the same
classes. Without labels, take N random images and declare each its own class: with 1,200 characters of
20 drawings in the pool, N = 5 random drawings are of 5 different characters with probability about
99 % (and a collision only makes one task harder). The support example of class n is image n itself;
its queries are random augmentations of it, which the learner must recognise as the same character.
Any meta-learner (ProtoNet, MAML) then trains on these tasks unchanged.
"""

from __future__ import annotations

import torch

from course_lib.contrastive.affine_views import AffineViewConfig, affine_views
from course_lib.contrastive.omniglot import check_unlabeled
from course_lib.data.episodes import Episodes


def umtra_episodes(images: torch.Tensor, n_way: int, n_query: int, meta_batch: int,
                   views: AffineViewConfig = AffineViewConfig(), generator: torch.Generator | None = None) -> Episodes:
    """`meta_batch` N-way 1-shot tasks from unlabeled images (M, C, H, W), on the images' device.

    Per task, `n_way` distinct random images are the classes (labels 0..N-1 in draw order); the
    support holds each image itself, the query `n_query` random views of each. Shapes as `sample_episodes`: x_support (T, N, C, H, W), y_support (T, N),
    x_query (T, N * n_query, C, H, W), y_query (T, N * n_query) grouped by label.
    """
    check_unlabeled(images, "umtra_episodes")
    if not 2 <= n_way <= len(images) or n_query < 1 or meta_batch < 1:
        raise ValueError(f"need 2 <= n_way <= {len(images)} (the images), n_query >= 1 and meta_batch >= 1; got "
                         f"n_way={n_way}, n_query={n_query}, meta_batch={meta_batch}.")
    dev = images.device
    where = generator.device if generator is not None else dev
    # n_way distinct images per task: the first n_way of a random order (exact, like sample_episodes).
    picks = torch.rand(meta_batch, len(images), generator=generator, device=where).argsort(dim=1)[:, :n_way]
    x = images[picks.to(dev)]                                                     # (T, N, C, H, W)
    shape = x.shape[2:]
    repeated = x.unsqueeze(2).expand(meta_batch, n_way, n_query, *shape).flatten(0, 2)
    query = affine_views(repeated, views, generator).view(meta_batch, n_way * n_query, *shape)
    labels = torch.arange(n_way, device=dev)
    return Episodes(x_support=x, y_support=labels.expand(meta_batch, n_way),
                    x_query=query, y_query=labels.repeat_interleave(n_query).expand(meta_batch, n_way * n_query))


def umtra_sampler(images: torch.Tensor, n_way: int, n_query: int, views: AffineViewConfig = AffineViewConfig()):
    """A function (meta_batch, generator) -> Episodes of unlabeled tasks, for `meta_train`."""
    check_unlabeled(images, "umtra_sampler")

    def sample(meta_batch: int, generator: torch.Generator) -> Episodes:
        return umtra_episodes(images, n_way, n_query, meta_batch, views, generator)

    return sample


__all__ = ["umtra_episodes", "umtra_sampler"]
