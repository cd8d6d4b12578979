"""course_lib: the library behind the contrastive self-supervised learning and meta-learning course.

One concept per module; the names a notebook needs are re-exported here:

    runtime     device, seeding, the run tier, data and runs folders, the environment report
    losses      NT-Xent / InfoNCE reference, alignment and uniformity     (kernels/: the fused Triton NT-Xent)
    data        CIFAR-10 and Omniglot (verified, cached), few-shot episodes
    augment     SimCLR views: torchvision reference and the batched on-device version (colour ops in color)
    models      CIFAR-stem ResNet-18, small CNN, projection head        (meta_models: Conv-4, sinusoid MLP)
    simclr      the SimCLR training loop (optim: LARS, warmup + cosine);  evaluate: kNN monitor, linear probe, baselines
    meta        functional MAML (second and first order), Reptile, ProtoNet, batched with vmap
    checkpoint  atomic save, safe load, exact resume
    tsne        t-SNE (sklearn reference, torch fast path: course_lib.tsne.tsne);  widgets: the embedding explorer
    checks      exercise checks, hints and solutions;  assignments: student versions of the notebooks

Importing it has no side effects (no seeding, no backend flags, no downloads). Triton kernels and
notebook-only dependencies (ipywidgets, IPython, scikit-learn's t-SNE) are imported where they are used.
"""

from course_lib import runtime
from course_lib.contrastive.views import ViewConfig, reference_views, simclr_views
from course_lib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from course_lib.checks import CheckFailed, check, hint, solution
from course_lib.data import CIFAR10_CLASSES, Episodes, class_subset, load_cifar10, load_omniglot, sample_episodes
from course_lib.contrastive.evaluate import extract_features, knn_accuracy, linear_probe, weighted_knn
from course_lib.contrastive.losses import alignment, info_nce, nt_xent, nt_xent_reference, uniformity
from course_lib.contrastive.models import ProjectionHead, ResNet18, SimCLRModel, SmallCNN
from course_lib.runtime import data_dir, device, pick, report, runs_dir, seed_all, tier
from course_lib.contrastive.simclr import SimCLRConfig, train_simclr
from course_lib.explore.embedding import EmbeddingExplorer

__version__ = "0.1.0"
