"""course_lib: the library behind the contrastive self-supervised learning and meta-learning course.

Two mirrored halves of the course on a shared ground, one concept per module:

    contrastive/  losses, views (+ colour), models, simclr (training), evaluate (kNN, linear probe),
                  affine_views and omniglot (SimCLR on drawings, without labels)
    meta/         core (functional MAML, Reptile), protonet, models (Conv-4, sinusoid MLP), train,
                  cost, sinusoid, omniglot, umtra (tasks from unlabeled images), label_free (notebook 07)
    kernels/      the fused NT-Xent in Triton, beside its reference
    data/         CIFAR-10, Omniglot (verified, cached), few-shot episodes
    explore/      every ipywidgets explorer, one figure helper
    checks/       exercise checks, hints and solutions, one module per notebook
    shared ground runtime (device, seeding, tier, paths), checkpoint (atomic write, safe load),
                  training (the one training run: plan, history, resume), progress (its bar),
                  optim (LARS, schedule),
                  similarity (distances, cosine neighbours), tsne, lessons (demo sizes per tier)
    assignments   instructor tool: student versions of the notebooks (ipynb: reading and writing them)
    classroom     instructor tool: the course as an nbgrader course, points per exercise

The names a notebook needs most are re-exported here. Importing it has no side effects (no seeding,
no backend flags, no downloads). Triton kernels and notebook-only dependencies (ipywidgets, IPython,
scikit-learn's t-SNE) are imported where they are used.
"""

from course_lib import runtime
from course_lib.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from course_lib.checks import CheckFailed, check, hint, solution
from course_lib.contrastive.evaluate import extract_features, knn_accuracy, linear_probe, weighted_knn
from course_lib.contrastive.losses import alignment, info_nce, nt_xent, nt_xent_reference, uniformity
from course_lib.contrastive.models import ProjectionHead, ResNet18, SimCLRModel, SmallCNN
from course_lib.contrastive.simclr import SimCLRConfig, train_simclr
from course_lib.contrastive.views import ViewConfig, reference_views, simclr_views
from course_lib.data import CIFAR10_CLASSES, Episodes, class_subset, load_cifar10, load_omniglot, sample_episodes
from course_lib.explore.embedding import EmbeddingExplorer
from course_lib.meta import MetaConfig, evaluate, meta_loss, meta_train
from course_lib.runtime import configure_threads, data_dir, device, pick, report, runs_dir, seed_all, tier
from course_lib.training import History, TrainingRun

__version__ = "0.1.0"
