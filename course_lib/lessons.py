"""The sizes of each notebook's demonstrations, per tier; training presets live with their trainers.

    cfg = runtime.pick(VIEWS_LESSON_PRESETS)   # notebook 02: this tier's sizes

A demonstration that is not training (a timing, a statistics check, a map of the features) still has a
size that must fit the tier's budget; those sizes are here, one frozen dataclass per notebook. The
trainers' presets (`contrastive.simclr.PRESETS`, `meta.sinusoid.SINUSOID_PRESETS`,
`meta.omniglot.OMNIGLOT_PRESETS`) sit beside the code they configure. This module imports only
dataclasses, so it never loads Triton (notebook 04 must pick Triton's interpreter before Triton loads).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewsLessonConfig:
    """Sizes of the measurements in notebook 02 (views and augmentations)."""

    n_match: int  # test images in the colour-histogram matching experiment (chance = 1 / n_match)
    n_reference: int  # images sent through the per-image torchvision reference when timing it
    n_batched: int  # images sent through simclr_views when timing it: at most the 10,000 test images
    n_stats: int  # crop boxes drawn by each pipeline to compare their distributions


VIEWS_LESSON_PRESETS = {
    "smoke": ViewsLessonConfig(n_match=512, n_reference=256, n_batched=4096, n_stats=2000),
    "laptop": ViewsLessonConfig(n_match=2000, n_reference=1000, n_batched=10000, n_stats=10000),
    "full": ViewsLessonConfig(n_match=10000, n_reference=2000, n_batched=10000, n_stats=20000),
}


@dataclass(frozen=True)
class ExplorerConfig:
    """The embedding explorer of notebook 03 (SimCLR features of the test images)."""

    n_points: int  # test images embedded and shown (the first n_points): t-SNE cost grows with it
    perplexity: int  # t-SNE perplexity: about the number of neighbours each point attends to
    k: int  # nearest neighbours shown for the selected point, and used for the label agreement
    min_agreement_gain: float  # trained encoder's neighbour label agreement minus the random one's, at least


# smoke: 300 points keep both maps to about a second each on 2 CPU cores (the exact torch t-SNE; see
# benchmarks/results/tsne-cpu.json), and its minute of training earns no claim beyond "not clearly worse";
# laptop: sklearn's t-SNE of 2000 points takes tens of seconds on a CPU; full: the torch t-SNE on a GPU.
# laptop: measured +14.9 points (37.1% vs 22.2%, quiet 2-core CPU, 2026-12-01), asserted with a margin;
# full: unmeasured (no GPU run yet), a conservative lower bound.
EXPLORER_PRESETS = {
    "smoke": ExplorerConfig(n_points=300, perplexity=20, k=8, min_agreement_gain=-0.05),
    "laptop": ExplorerConfig(n_points=2000, perplexity=30, k=8, min_agreement_gain=0.05),
    "full": ExplorerConfig(n_points=5000, perplexity=30, k=8, min_agreement_gain=0.05),
}


@dataclass(frozen=True)
class DemoConfig:
    """Sizes for notebook 04's live parity check of the fused kernel and, on a GPU, its live benchmark."""

    rows: int                   # 2N of the parity check (the interpreter runs Python per tile: keep small on CPU)
    dim: int                    # D of the parity check
    bench_rows: tuple           # 2N values of the live GPU benchmark (unused without a GPU)


DEMO_PRESETS = {
    "smoke": DemoConfig(rows=130, dim=129, bench_rows=(1024, 4096)),
    "laptop": DemoConfig(rows=514, dim=128, bench_rows=(1024, 4096, 16384)),
    "full": DemoConfig(rows=4098, dim=128, bench_rows=(1024, 4096, 16384, 65536)),
}


__all__ = ["ViewsLessonConfig", "VIEWS_LESSON_PRESETS", "ExplorerConfig", "EXPLORER_PRESETS", "DemoConfig",
           "DEMO_PRESETS"]
