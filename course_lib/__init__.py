"""course_lib: the library behind the contrastive self-supervised learning and meta-learning course.

Importing it has no side effects (no seeding, no backend flags, no downloads). Triton kernels and
notebook-only dependencies (ipywidgets) are imported lazily, where they are used.
"""

from course_lib import runtime
from course_lib.runtime import data_dir, device, pick, report, seed_all, tier
from course_lib.losses import alignment, info_nce, nt_xent, nt_xent_reference, uniformity
from course_lib.checks import CheckFailed, check, hint, solution

__version__ = "0.1.0"
