"""Meta-learning: functional MAML (second and first order), Reptile and ProtoNet, batched over tasks.

    from course_lib.meta import MetaConfig, meta_loss, meta_train, evaluate

core.py      the functional inner/outer loops over parameter dicts, vmap fast path and loop reference
protonet.py  prototypical networks (the baseline)
models.py    Conv-4 (batch-statistics BatchNorm that vmap differentiates correctly) and the sinusoid MLP
train.py     meta-training through the kit's one training run, and evaluation with 95% intervals
cost.py      seconds per outer step and the memory its backward keeps
sinusoid.py  the regression tasks of the MAML paper and the pretrained baseline
omniglot.py  few-shot Omniglot: per-tier presets, episode sampler, published results
umtra.py     few-shot tasks made from unlabeled images by augmentation (UMTRA)
label_free.py  few-shot Omniglot without labels: notebook 07's methods, presets and published results
"""

from course_lib.meta.core import *  # noqa: F401,F403
from course_lib.meta.core import __all__ as _core
from course_lib.meta.protonet import *  # noqa: F401,F403
from course_lib.meta.protonet import __all__ as _protonet
from course_lib.meta.train import *  # noqa: F401,F403
from course_lib.meta.train import __all__ as _train
from course_lib.meta.cost import *  # noqa: F401,F403
from course_lib.meta.cost import __all__ as _cost

__all__ = [*_core, *_protonet, *_train, *_cost]
