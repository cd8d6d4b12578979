"""t-SNE: scikit-learn's as the reference, an exact t-SNE in batched torch ops as the fast path.

    y = tsne(h, perplexity=30)                 # (N, D) features -> (N, 2) float32 map, cached by content
    y = tsne(h, impl="torch")                  # exact t-SNE on h.device (a GPU makes it fast)

The torch path is the algorithm of van der Maaten & Hinton (2008) as scikit-learn runs it: input
affinities as sklearn's default builds them (squared Euclidean distances to each point's 3 x perplexity
nearest neighbours, a Gaussian bandwidth per point found by binary search on the perplexity, all points
at once, then symmetrised); PCA init scaled to std 1e-4; 250 steps with P exaggerated 12x and momentum
0.5, then momentum 0.8 up to `max_iter`; per-coordinate gains (+0.2 / x0.8, floor 0.01); learning rate
max(N / 12 / 4, 50); sklearn's stopping rules, checked every 50 steps. Unlike sklearn's Barnes-Hut, the
gradient is exact: all N^2 pair forces, as a handful of dense tensor ops per step, which a GPU runs in
milliseconds. On a CPU, Barnes-Hut's O(N log N) wins beyond a few hundred points, so `auto` picks by
device and N (see CPU_TORCH_MAX_POINTS).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict

import numpy as np
import torch

from course_lib.runtime import data_dir
from course_lib.similarity import squared_distances

IMPLS = ("auto", "sklearn", "torch")
EARLY_EXAGGERATION = 12.0  # P multiplier for the first 250 steps (sklearn's default)
EXPLORATION_ITERS = 250  # steps with exaggerated P and momentum 0.5
CHECK_EVERY = 50  # steps between convergence checks (sklearn's _N_ITER_CHECK)
MIN_GRAD_NORM = 1e-7  # stop when the gradient norm falls below this (sklearn's default)
NO_PROGRESS_ITERS = 300  # stop after this many steps without a lower KL (sklearn's default)
# Rows per block are chosen so one (rows, N) float32 block is at most this many bytes: big blocks keep a
# GPU busy; on a CPU, blocks that fit in the cache run several times faster than whole N x N passes.
CHUNK_BYTES = {"cuda": 256 * 2**20, "cpu": 4 * 2**20}

# On a CPU the exact O(N^2) torch path beats sklearn's Barnes-Hut only for small N (tsne-cpu.json, 1 thread, shared
# 2-core machine): N=300 torch 0.9 s vs 1.8 s; N=500 3.2 s each (another run 8.5 vs 6.5 s); N=1000 18.1 vs 9.4 s.
CPU_TORCH_MAX_POINTS = 300

_MEMORY_CACHE: OrderedDict[str, torch.Tensor] = OrderedDict()
MEMORY_CACHE_SIZE = 32  # maps kept in memory (least recently used dropped first)


def _validate(x: torch.Tensor, perplexity: float, impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} is not a t-SNE implementation; expected one of {', '.join(IMPLS)}.")
    if x.dim() != 2:
        raise ValueError(f"tsne expects features of shape (N, D), got shape {tuple(x.shape)}; "
                         "flatten each sample to one row first (e.g. x.reshape(len(x), -1)).")
    if not x.is_floating_point():
        raise TypeError(f"tsne expects floating-point features, got {x.dtype}; convert with x.float().")
    if not torch.isfinite(x).all():
        raise ValueError("tsne input contains NaN or inf; drop those rows or fix the features that produced them.")
    if not perplexity > 0:
        raise ValueError(f"perplexity must be positive, got {perplexity}; 5 to 50 is the usual range.")
    if x.shape[0] < 3 * perplexity:
        raise ValueError(f"t-SNE needs at least 3 x perplexity = {3 * perplexity:g} points, got {x.shape[0]}; "
                         f"use more points or a perplexity of at most {x.shape[0] // 3}.")


def _collapsed(x: torch.Tensor) -> bool:
    """Whether all rows of x (N, D) are one point (to 1e-6 of their size): sklearn's PCA init crashes on it."""
    return bool((x - x[:1]).abs().amax() <= 1e-6 * x.abs().amax().clamp_min(1e-30))


def torch_tsne_bytes(n_points: int) -> int:
    """GPU memory the exact torch path holds at once: P (an N x N float32 matrix) and about two row blocks."""
    return 4 * n_points * n_points + 2 * CHUNK_BYTES["cuda"]


def choose_impl(n_points: int, device: torch.device, free_bytes: int | None = None) -> str:
    """What `impl="auto"` runs: on a GPU torch if it fits in 80% of the free memory (`free_bytes`, by default
    asked of CUDA), else sklearn (Barnes-Hut, O(N) memory); on a CPU torch only up to CPU_TORCH_MAX_POINTS."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0] if free_bytes is None else free_bytes
        return "torch" if torch_tsne_bytes(n_points) <= 0.8 * free else "sklearn"
    return "torch" if n_points <= CPU_TORCH_MAX_POINTS else "sklearn"


def _key(x: torch.Tensor, **params) -> str:
    """Content hash of the features' bytes, shape and dtype plus every parameter that changes the map."""
    digest = hashlib.sha256(x.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())  # any dtype, bf16 too
    digest.update(repr((tuple(x.shape), str(x.dtype), sorted(params.items()))).encode())
    return digest.hexdigest()[:32]


def tsne(x: torch.Tensor | np.ndarray, perplexity: float = 30.0, impl: str = "auto", seed: int = 0,
         max_iter: int = 1000, cache: bool = True, disk_cache: bool = False) -> torch.Tensor:
    """A 2-D t-SNE map of `x`.

    x: (N, D) floating features (tensor or array), N >= 3 * perplexity.
    impl: "sklearn" (Barnes-Hut, the reference), "torch" (exact, on x.device) or "auto" (`choose_impl`).
    seed: sklearn's random_state; the torch path is deterministic given its PCA init.
    cache: reuse a map computed before for the same bytes and parameters (in memory, LRU);
    disk_cache: also read/write it under data_dir()/cache/tsne/.
    Returns: (N, 2) float32 on x.device.
    """
    x = torch.as_tensor(x)
    _validate(x, perplexity, impl)
    if max_iter < EXPLORATION_ITERS:
        raise ValueError(f"max_iter must be at least {EXPLORATION_ITERS} (the early-exaggeration phase), got {max_iter}.")
    if _collapsed(x):
        warnings.warn(f"all {x.shape[0]} feature vectors are the same (up to 1e-6 of their size), as a collapsed "
                      "encoder produces: there is no neighbourhood to map, so every point is placed at (0, 0). "
                      "Check the encoder (uniformity, effective rank) before reading a map.", stacklevel=2)
        return torch.zeros(x.shape[0], 2, device=x.device)
    chosen = choose_impl(x.shape[0], x.device) if impl == "auto" else impl
    if impl == "torch" and x.device.type == "cuda" and choose_impl(x.shape[0], x.device) != "torch":
        raise MemoryError(f"the exact t-SNE of {x.shape[0]:,} points needs {torch_tsne_bytes(x.shape[0]) / 2**30:.1f} GiB "
                          "of GPU memory (its N x N matrix), more than 80% of what is free: use impl='auto' or "
                          "'sklearn' (Barnes-Hut, O(N) memory), or map fewer points.")
    key = _key(x, perplexity=float(perplexity), impl=chosen, seed=seed, max_iter=max_iter,
               device=x.device.type if chosen == "torch" else "cpu")
    if cache and key in _MEMORY_CACHE:
        _MEMORY_CACHE.move_to_end(key)
        return _MEMORY_CACHE[key].clone().to(x.device)
    path = data_dir() / "cache" / "tsne" / f"{key}.pt"
    y = _load(path) if disk_cache else None
    if y is None:
        if chosen == "sklearn":
            y = tsne_sklearn(x, perplexity, seed, max_iter)
        else:
            y = tsne_torch(x, perplexity, max_iter)
        if disk_cache:
            from course_lib.checkpoint import save_checkpoint

            save_checkpoint(path, kind="tsne", embedding=y.cpu())
    if cache:
        _MEMORY_CACHE[key] = y.detach().cpu().clone()
        while len(_MEMORY_CACHE) > MEMORY_CACHE_SIZE:
            _MEMORY_CACHE.popitem(last=False)
    return y.to(x.device)


def _load(path) -> torch.Tensor | None:
    from course_lib.checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path, kind="tsne")["embedding"]
    except (CheckpointError, KeyError):
        return None  # absent or unreadable: compute it again (and overwrite it)


def clear_cache(disk: bool = False) -> None:
    """Forget cached maps (in memory; also on disk when `disk`)."""
    _MEMORY_CACHE.clear()
    if disk:
        for f in (data_dir() / "cache" / "tsne").glob("*.pt"):
            f.unlink()


def tsne_sklearn(x: torch.Tensor, perplexity: float = 30.0, seed: int = 0, max_iter: int = 1000) -> torch.Tensor:
    """The reference: sklearn.manifold.TSNE(init="pca", learning_rate="auto"), Barnes-Hut. (N, 2) float32."""
    from sklearn.manifold import TSNE

    model = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=max_iter,
                 random_state=seed)
    y = model.fit_transform(x.detach().cpu().double().numpy())
    return torch.from_numpy(np.ascontiguousarray(y)).float()


def _row_chunk(n: int, device: torch.device) -> int:
    return max(1, min(n, CHUNK_BYTES.get(device.type, CHUNK_BYTES["cuda"]) // (4 * n)))


def joint_probabilities(x: torch.Tensor, perplexity: float, n_neighbours: int | None = None,
                        tol: float = 1e-5, steps: int = 100) -> torch.Tensor:
    """Symmetric input affinities P (N, N) float32, summing to 1, zero diagonal, from features x (N, D).

    As sklearn's default (Barnes-Hut) method builds them: p_{j|i} over each point's `n_neighbours`
    nearest neighbours (default min(N - 1, 3 * perplexity + 1)), zero elsewhere. Passing N - 1 gives the
    dense P of the original exact method, which maps noisy features worse: on the benchmark's mixture
    (N = 1000) trustworthiness fell from 0.818 to 0.798. Each row's Gaussian precision beta_i is found by
    bisection so that the entropy of p_{.|i} is log(perplexity), all rows of a block at once
    (sklearn's _binary_search_perplexity, vectorised). Then P = (P_cond + P_cond^T) / sum.
    """
    n = x.shape[0]
    k = min(n - 1, int(3.0 * perplexity + 1) if n_neighbours is None else n_neighbours)
    xf = x.detach().float()
    xf = xf - xf.mean(0)  # distances are shift-invariant; centring keeps the |a|^2 + |b|^2 - 2ab form accurate
    P = torch.zeros(n, n, dtype=torch.float32, device=x.device)
    target = float(np.log(perplexity))
    rows = _row_chunk(n, x.device)
    for start in range(0, n, rows):
        idx = torch.arange(start, min(start + rows, n), device=x.device)
        d = squared_distances(xf[idx], xf)  # (b, N)
        d[torch.arange(len(idx), device=x.device), idx] = float("inf")  # a point is not its own neighbour
        d, neighbours = d.topk(k, dim=1, largest=False)  # (b, k), nearest first
        d = d.double()  # float64 keeps the entropy exact enough for tol
        d = d - d[:, :1]  # p_{j|i} is unchanged by a per-row shift; exp() cannot underflow to all zeros
        beta = torch.ones(len(idx), 1, dtype=torch.float64, device=x.device)
        lo, hi = torch.full_like(beta, -float("inf")), torch.full_like(beta, float("inf"))
        for step in range(steps):
            p = torch.exp(-d * beta)
            s = p.sum(1, keepdim=True)
            entropy = torch.log(s) + beta * (d * p).sum(1, keepdim=True) / s
            too_flat = entropy > target  # entropy too high: the Gaussian is too wide, so raise beta
            lo = torch.where(too_flat, beta, lo)
            hi = torch.where(too_flat, hi, beta)
            beta = torch.where(too_flat, torch.where(hi.isinf(), beta * 2, (beta + hi) / 2),
                               torch.where(lo.isinf(), beta / 2, (beta + lo) / 2))
            if step % 10 == 9 and bool(((entropy - target).abs() <= tol).all()):
                break
        P[start:start + len(idx)].scatter_(1, neighbours, (p / s).float())
    # P <- P + P^T block by block, in place, so memory stays one N x N matrix plus one block
    for i in range(0, n, rows):
        for j in range(i, n, rows):
            block = P[i:i + rows, j:j + rows] + P[j:j + rows, i:i + rows].T
            P[i:i + rows, j:j + rows] = block
            P[j:j + rows, i:i + rows] = block.T
    P /= P.sum()
    return P


def kl_gradient(y: torch.Tensor, P: torch.Tensor, compute_error: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradient (N, 2) of KL(P || Q) w.r.t. the map y (N, 2), and the KL itself when `compute_error`.

    With w_ij = 1 / (1 + |y_i - y_j|^2) and Z = sum_{i != j} w_ij, q_ij = w_ij / Z and
        dC/dy_i = 4 sum_j (p_ij - w_ij / Z) w_ij (y_i - y_j) = 4 (A_i - B_i / Z),
    A_i = sum_j p_ij w_ij (y_i - y_j), B_i = sum_j w_ij^2 (y_i - y_j): one pass over row blocks, no N x N Q.
    """
    n = y.shape[0]
    y1 = torch.cat([y, torch.ones_like(y[:, :1])], 1)  # (N, 3): one matmul gives sum_j m_ij y_j and sum_j m_ij
    A, B = torch.empty_like(y), torch.empty_like(y)
    z, p_log_w = y.new_zeros(()), y.new_zeros(())
    rows = _row_chunk(n, y.device)
    for start in range(0, n, rows):
        yb, pb = y[start:start + rows], P[start:start + rows]
        # Coordinate differences, not |a|^2 + |b|^2 - 2ab: in float32 that form loses close pairs' distances
        # once the map spans tens of units, and with them the local structure (trustworthiness fell by 0.02).
        dx = yb[:, :1] - y[:, 0]
        dy = yb[:, 1:] - y[:, 1]
        w = (dx * dx).add_(1.0).addcmul_(dy, dy).reciprocal_()  # (b, N); diagonal entries are 1
        z = z + w.sum()
        if compute_error:
            p_log_w = p_log_w + (pb * torch.log(w)).sum()
        s = (pb * w) @ y1  # (b, 3): [sum_j p w y_j, sum_j p w]
        A[start:start + rows] = s[:, 2:] * yb - s[:, :2]
        s = w.square_() @ y1
        B[start:start + rows] = s[:, 2:] * yb - s[:, :2]
    z = z - n  # the diagonal (w_ii = 1) is not a pair
    grad = 4.0 * (A - B / z)
    if not compute_error:
        return grad, None
    # KL = sum p log p - sum p log q with q_ij = w_ij / Z (P sums to 1, times the exaggeration factor)
    kl = torch.special.xlogy(P, P).sum() - p_log_w + P.sum() * torch.log(z)
    return grad, kl


def pca_init(x: torch.Tensor) -> torch.Tensor:
    """First two principal components of x (N, D), scaled so the first has std 1e-4 (sklearn's init)."""
    xd = x.detach().double()
    xc = xd - xd.mean(0)
    _, vecs = torch.linalg.eigh(xc.T @ xc)  # (D, D) covariance: cheap for D in the hundreds
    comps = vecs[:, [-1, -2]]  # largest eigenvalues last
    # sklearn's svd_flip: the largest-magnitude loading of each component is positive
    signs = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))
    y = xc @ (comps * signs)
    return (y / y[:, 0].std(correction=0) * 1e-4).float()  # np.std: population std


def tsne_torch(x: torch.Tensor, perplexity: float = 30.0, max_iter: int = 1000) -> torch.Tensor:
    """Exact t-SNE on x.device in batched tensor ops. x: (N, D) float; returns (N, 2) float32."""
    n = x.shape[0]
    P = joint_probabilities(x, perplexity)
    y = pca_init(x)
    learning_rate = max(n / EARLY_EXAGGERATION / 4, 50.0)  # sklearn's learning_rate="auto"
    P *= EARLY_EXAGGERATION
    it = 0
    for momentum, stop, patience in ((0.5, EXPLORATION_ITERS, EXPLORATION_ITERS), (0.8, max_iter, NO_PROGRESS_ITERS)):
        update = torch.zeros_like(y)  # each phase starts with fresh momentum and gains, as sklearn's does
        gains = torch.ones_like(y)
        best_error, best_iter = float("inf"), it
        for i in range(it, stop):
            check = (i + 1) % CHECK_EVERY == 0
            grad, error = kl_gradient(y, P, compute_error=check)
            same_sign = update * grad >= 0.0
            gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min_(0.01)
            grad = grad * gains
            update = momentum * update - learning_rate * grad
            y = y + update
            if check:
                error = float(error)
                if error < best_error:
                    best_error, best_iter = error, i
                elif i - best_iter > patience:
                    break
                if float(grad.norm()) <= MIN_GRAD_NORM:
                    break
        it = i + 1
        if momentum == 0.5:
            P /= EARLY_EXAGGERATION
    return y


__all__ = ["tsne", "tsne_sklearn", "tsne_torch", "choose_impl", "torch_tsne_bytes", "clear_cache",
           "joint_probabilities", "kl_gradient", "pca_init", "CPU_TORCH_MAX_POINTS"]
