"""Datasets for the course: CIFAR-10 and Omniglot, verified, cached, and few-shot episodes.

    from course_lib.data import load_cifar10, class_subset, load_omniglot, sample_episodes

The data folder is `COURSE_DATA_DIR` (see `course_lib.runtime.data_dir`). Nothing is read or
downloaded at import time.
"""

from course_lib.data.download import CorruptDataError, DataNotFoundError, DownloadError
from course_lib.data.cifar10 import CIFAR10_CLASSES, DataIntegrityWarning, class_subset, load_cifar10
from course_lib.data.omniglot import load_omniglot
from course_lib.data.episodes import Episodes, sample_episodes

__all__ = ["CIFAR10_CLASSES", "CorruptDataError", "DataIntegrityWarning", "DataNotFoundError", "DownloadError", "Episodes",
           "class_subset", "load_cifar10", "load_omniglot", "sample_episodes"]
