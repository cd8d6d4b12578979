"""Checkpoints that never lose a learner's work: atomic save, safe load, exact resume.

    save_checkpoint(path, kind="simclr", model=..., optimizer=..., epoch=3, rng=rng_state(gen))
    state = load_checkpoint(path, kind="simclr")        # weights_only=True, checked, readable errors

A save writes to a temporary file in the same folder, flushes it to disk and renames it over the
old one (`os.replace` is atomic), so a run killed mid-save leaves the previous checkpoint intact.
That write is `atomic_write`, the kit's one way to write a file that must never be left half-written
(checkpoints, the data cache, downloads, notebooks).
Loading uses `torch.load(weights_only=True)`: a checkpoint can hold tensors, numbers, strings and
containers of them, never arbitrary pickled objects, so opening a file from elsewhere is safe.
The kit's one training run (`course_lib.training`) uses these functions; no trainer writes its own.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
import torch

FORMAT = "course_lib.checkpoint/1"
RESERVED = ("format", "kind")  # keys of the payload that save_checkpoint writes itself


class CheckpointError(RuntimeError):
    """A checkpoint could not be used; the message says why and what to do."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", durable: bool = True, **open_kwargs) -> Iterator[IO]:
    """Write `path` all or nothing: `with atomic_write(path) as fh: ...` writes a temporary file in the same
    folder and renames it over `path` when the block ends without an error.

    An exception (a failed check inside the block, Ctrl-C, a full disk) removes the temporary file and
    leaves the old `path` as it was. The temporary name is unique, so concurrent writers never share one.
    durable: flush the file and the rename to the disk (a power cut keeps one of the two versions).
    The file gets the mode of the one it replaces, or 0644 (mkstemp's 0600 would hide it from others).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)


def save_checkpoint(path: str | os.PathLike, kind: str, **state: Any) -> Path:
    """Atomically write `state` (state_dicts, numbers, RNG states...) tagged with `kind` to `path`.

    Returns the path. Either the whole new checkpoint is at `path` afterwards, or the old one is.
    """
    if "format" in state:  # `kind` cannot collide: Python itself refuses a second `kind=`
        raise ValueError("'format' is reserved for the checkpoint's own format tag; save that value under another name.")
    with atomic_write(path) as fh:
        torch.save({"format": FORMAT, "kind": kind, **state}, fh)
    return Path(path)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX: the new directory entry reaches the disk); best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable enough for a course
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, kind: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by `save_checkpoint` for the same `kind`, safely (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; start a fresh run (or check the path).")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for damaged or unsafe files
        raise CheckpointError(
            f"{path} is not a readable course_lib checkpoint ({type(exc).__name__}: {str(exc)[:200]}). "
            "It may be truncated, corrupt or from another program; delete it (or move it away) to start fresh."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} was not written by course_lib (expected format {FORMAT!r}); "
            "it cannot be resumed here. Delete it or choose another checkpoint path."
        )
    if payload.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a {payload.get('kind')!r} checkpoint, but a {kind!r} run tried to resume from it; "
            "use a separate checkpoint path for each kind of run."
        )
    return payload


def _numpy_state() -> tuple:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)


def rng_state(*generators: torch.Generator) -> dict:
    """Every random state a run depends on: Python, NumPy, torch (CPU, CUDA) and the given generators."""
    return {
        "python": random.getstate(),  # a tuple of ints: loads under weights_only
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
        "generator_devices": [g.device.type for g in generators],   # a CUDA state does not fit a CPU generator
    }


def set_rng_state(state: dict, *generators: torch.Generator) -> None:
    """Restore what `rng_state` captured, into the global RNGs and the given generators (same order).

    Works whatever `map_location` the checkpoint was loaded with: RNG states are CPU byte tensors,
    so any that were mapped to a GPU are brought back first. Nothing is changed if the number of
    generators or their device types (CPU, CUDA) do not match. CUDA states are restored on the GPUs
    that are visible, as many as both have.
    """
    if len(generators) != len(state["generators"]):
        raise CheckpointError(
            f"the checkpoint saved {len(state['generators'])} generator state(s) but {len(generators)} were given to restore."
        )
    saved = state.get("generator_devices") or [None] * len(generators)   # absent in older checkpoints
    for g, device_type, s in zip(generators, saved, state["generators"]):
        if device_type not in (None, g.device.type) or s.numel() != g.get_state().numel():
            raise CheckpointError(
                f"this checkpoint's random state was written by a run on {device_type or 'another device type'}, and "
                f"this run draws on {g.device.type}: a run resumes exactly only on the device type it started on. "
                "Continue it there, or start a fresh run here (another checkpoint path, or delete the file).")
    random.setstate(state["python"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)
    for g, s in zip(generators, state["generators"]):
        g.set_state(s.cpu())


__all__ = ["CheckpointError", "atomic_write", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]
