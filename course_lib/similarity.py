"""How feature rows compare: squared Euclidean distances, each row's nearest neighbours by cosine, and
how well a low-dimensional map (t-SNE's) keeps the neighbourhoods of the rows it was made from.

    d = squared_distances(a, b)                   # a (n, D), b (m, D) -> (n, m), differentiable
    sims, idx = cosine_topk(queries, keys, k)     # queries (m, D), keys (n, D) -> (m, k), (m, k)
    trustworthiness(x, embedding), map_knn_accuracy(embedding, labels)    # quality of a 2-D map, in [0, 1]

ProtoNet scores a query by its squared distance to each class prototype, t-SNE builds its affinities
from squared distances to each point's neighbours; the weighted kNN classifier and the embedding
explorer vote with, and show, the most cosine-similar rows. Both are written once, here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _check_rows(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must be (rows, D) with the same D, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}; flatten each sample to one row first (x.reshape(len(x), -1)).")


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 for every pair: a (n, D), b (m, D) -> (n, m), in a's dtype, on its device.

    Expanded as |a|^2 - 2 a.b + |b|^2: one matrix product instead of an (n, m, D) difference tensor.
    Rounding can leave the expansion a little below 0 for near-identical rows, hence the clamp, out of
    place so that autograd differentiates through it (ProtoNet trains through these distances).
    Centre both inputs on a common mean first when their norms are much larger than their distances.
    """
    _check_rows(a, b, ("a", "b"))
    return (a.pow(2).sum(1, keepdim=True) - 2 * a @ b.T + b.pow(2).sum(1)).clamp_min(0)  # (n, m)


def cosine_topk(queries: torch.Tensor, keys: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
                batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The k keys most cosine-similar to each query, most similar first.

    queries (m, D), keys (n, D): float, any scale (rows are L2-normalised here, in float32).
    exclude: (m,) int64 or None; exclude[i] is a key that cannot be query i's neighbour (itself, when the
    queries are the keys: pass torch.arange(n)). 1 <= k <= n, or n - 1 with `exclude`.
    Returns (similarities (m, k) float32, indices (m, k) int64 into keys), on keys' device.
    Batched over queries: one (batch_size, n) similarity matrix at a time, 4 * batch_size * n bytes.
    """
    _check_rows(queries, keys, ("queries", "keys"))
    m, n = queries.shape[0], keys.shape[0]
    most = n - 1 if exclude is not None else n
    if not 1 <= k <= most:
        raise ValueError(f"k must be between 1 and {most} (the number of keys"
                         f"{', less the excluded one' if exclude is not None else ''}), got {k}.")
    if exclude is not None and tuple(exclude.shape) != (m,):
        raise ValueError(f"exclude must hold one key index per query, shape ({m},), got {tuple(exclude.shape)}.")
    keys = F.normalize(keys.float(), dim=1)  # (n, D)
    sims, indices = [], []
    for start in range(0, m, batch_size):
        q = F.normalize(queries[start:start + batch_size].float().to(keys.device), dim=1)  # (b, D)
        s = q @ keys.T  # (b, n)
        if exclude is not None:
            rows = torch.arange(len(q), device=keys.device)
            s = s.index_put((rows, exclude[start:start + len(q)].to(keys.device)), s.new_tensor(-float("inf")))
        top = s.topk(k, dim=1)  # (b, k) each
        sims.append(top.values)
        indices.append(top.indices)
    if not sims:
        return keys.new_zeros(0, k), torch.zeros(0, k, dtype=torch.int64, device=keys.device)
    return torch.cat(sims), torch.cat(indices)


def map_knn_accuracy(embedding: torch.Tensor, labels: torch.Tensor, k: int = 10) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote in a map `embedding` (N, d), labels (N,).

    A quality measure of a 2-D map (do classes stay together?); the kNN classifier of features for
    the course's results is `course_lib.contrastive.evaluate.knn_accuracy`.
    """
    from sklearn.neighbors import KNeighborsClassifier

    e = torch.as_tensor(embedding).detach().cpu().double().numpy()
    y = torch.as_tensor(labels).detach().cpu().numpy()
    clf = KNeighborsClassifier(n_neighbors=k + 1).fit(e, y)
    neighbours = clf.kneighbors(e, return_distance=False)[:, 1:]  # drop each point itself
    votes = np.array([np.bincount(y[row]).argmax() for row in neighbours])
    return float((votes == y).mean())


def trustworthiness(x: torch.Tensor, embedding: torch.Tensor, k: int = 10) -> float:
    """sklearn.manifold.trustworthiness(x, embedding, n_neighbors=k): 1 = local neighbourhoods kept."""
    from sklearn.manifold import trustworthiness as _trust

    as_np = lambda t: torch.as_tensor(t).detach().cpu().double().numpy()  # noqa: E731
    return float(_trust(as_np(x), as_np(embedding), n_neighbors=k))


__all__ = ["map_knn_accuracy", "trustworthiness", "squared_distances", "cosine_topk"]
