"""CIFAR-10 as uint8 tensors: the official python batches, verified, cached, with seeded subsets.

    images, labels = load_cifar10("train")   # (50000, 3, 32, 32) uint8, (50000,) int64, on the CPU
    x, y = class_subset(images, labels, per_class=100, seed=0)

Where the data comes from, in order: the decoded cache `<root>/cache/cifar10-<split>.pt`, the official
folder `<root>/cifar-10-batches-py/`, or (if `download=True`) the official archive, fetched and
checked against its MD5. Each batch file is checked against its official MD5 when the cache is built
(the cache remembers the result and is rebuilt when a file's size or time changes); a copy that
differs (such as the JPEG re-encoding written by `materialize.py`) still loads, with one warning per call.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from course_lib import runtime
from course_lib.data import cache
from course_lib.data.download import Archive, CorruptDataError, ensure, md5sum

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
FOLDER = "cifar-10-batches-py"
ARCHIVE = Archive(
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    filename="cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
)
# Official MD5 of each batch file (the same sums torchvision checks).
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class DataIntegrityWarning(UserWarning):
    """Data on disk differs from the official release (checksums); it loads, but results may differ."""


def _split_files(split: str) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    return SPLITS[split]


# The only globals a batch refers to: numpy's array reconstruction (numpy < 2 and >= 2 name it differently),
# and _codecs.encode, with which Python 3 writes bytes in the python-2 protocol (str -> bytes, nothing else).
# Anything else in a "batch" file is not CIFAR-10 and is refused before it can run.
ALLOWED_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}


class BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch holds (dicts, lists, str, bytes, ints, numpy arrays) and nothing else:
    a pickle can name any function to call while loading, so a tampered file could otherwise run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which no CIFAR-10 batch contains; refused, not run")


def read_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """(data (n, 3072) uint8, labels (n,) ints in 0..9) of one python batch file, read safely and checked."""
    remedy = (f"Delete {path.parent} and let load_cifar10 download the official archive again (or re-run "
              "materialize.py); never load data files from an untrusted source.")
    try:
        with open(path, "rb") as fh:
            batch = BatchUnpickler(fh, encoding="latin1").load()  # the official files are python-2 pickles
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises many types; all mean the same here
        raise CorruptDataError(f"{path} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}). {remedy}") from exc
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(v, int) and 0 <= v < 10 for v in labels)):
        raise CorruptDataError(f"{path} is a pickle, but not a CIFAR-10 batch: expected a dict with 'data' (N, 3072) "
                               f"uint8 and N 'labels' in 0..9. {remedy}")
    return data, labels


def _decode(folder: Path, files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        data, batch_labels = read_batch(folder / name)  # data: 1024 R, 1024 G, 1024 B values per row, row-major
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.as_tensor(batch_labels, dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)


def _warn_mismatch(folder: Path, mismatched: list[str]) -> None:
    warnings.warn(
        f"CIFAR-10 in {folder} differs from the official release: the MD5 of {', '.join(mismatched)} does not "
        "match the official sums (expected for the JPEG re-encoding written by materialize.py). It loads fine, "
        "but accuracies may differ a little from published ones.",
        DataIntegrityWarning,
        stacklevel=3,
    )


def load_cifar10(split: str = "train", root: str | Path | None = None, download: bool = True,
                 timeout: float = 60.0) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 `split` ("train": 50,000 images, "test": 10,000) as CPU tensors.

    Returns images (N, 3, 32, 32) uint8 and labels (N,) int64 in 0..9 (names in CIFAR10_CLASSES).
    root: the data folder (default: COURSE_DATA_DIR, see `runtime.data_dir()`).
    download: fetch the official archive if the folder is missing (needs internet).
    Raises DataNotFoundError (naming the folder searched and how to provide the data) if absent.
    """
    files = _split_files(split)
    root = Path(root).expanduser() if root is not None else runtime.data_dir()
    folder = root / FOLDER
    ensure(root, "CIFAR-10", folder, lambda: [name for name in files if not (folder / name).is_file()], lambda _: [ARCHIVE],
           root, download, timeout)
    key = cache.source_key([folder / name for name in files])
    entry = cache.load(root, f"cifar10-{split}", key)
    if entry is None:
        mismatched = [name for name in files if md5sum(folder / name) != FILE_MD5[name]]
        images, labels = _decode(folder, files)
        entry = {"key": key, "images": images, "labels": labels, "mismatched": mismatched}
        cache.save(root, f"cifar10-{split}", entry)
    if entry["mismatched"]:
        _warn_mismatch(folder, list(entry["mismatched"]))
    return entry["images"], entry["labels"]


def class_subset(images: torch.Tensor, labels: torch.Tensor, per_class: int, seed: int = 0,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` images of every class, drawn without replacement with `seed`, in a shuffled order.

    images (N, ...) any dtype, labels (N,) int64; returns (n_classes * per_class, ...) and labels,
    on the inputs' device. The same seed gives the same subset on every machine.
    """
    if labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"expected images (N, ...) and labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}.")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}.")
    gen = torch.Generator().manual_seed(seed)
    cpu_labels = labels.cpu()
    picks = []
    for c in torch.unique(cpu_labels).tolist():
        idx = (cpu_labels == c).nonzero().squeeze(1)
        if idx.numel() < per_class:
            raise ValueError(f"class {c} has only {idx.numel()} images; cannot take per_class={per_class}.")
        picks.append(idx[torch.randperm(idx.numel(), generator=gen)[:per_class]])
    order = torch.cat(picks)
    order = order[torch.randperm(order.numel(), generator=gen)].to(labels.device)
    return images[order], labels[order]


__all__ = ["CIFAR10_CLASSES", "DataIntegrityWarning", "load_cifar10", "class_subset"]
