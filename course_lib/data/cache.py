"""Decoded-tensor cache under `<data_dir>/cache/`: decode once, then load in well under a second.

A cache entry is a dict of tensors and plain values saved with `torch.save` and read back with
`weights_only=True` (no pickled code runs). It carries a `key` describing its sources (file names,
sizes, modification times); a load whose key differs is treated as a miss, so editing or replacing
the raw data invalidates the cache by itself. Writes are atomic (`course_lib.checkpoint.atomic_write`), so a
crash never leaves a half-written entry; a read-only data folder simply means no cache.
"""

from __future__ import annotations

from pathlib import Path

import torch

from course_lib.checkpoint import atomic_write


def source_key(paths: list[Path]) -> list[list]:
    """[[name, size, mtime_ns], ...] of existing source files: changes when any of them does."""
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def load(root: Path, name: str, key) -> dict | None:
    """The entry `<root>/cache/<name>.pt` if it exists, reads cleanly and was built from `key`; else None."""
    path = root / "cache" / f"{name}.pt"
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        return None
    if not isinstance(entry, dict) or (key is not None and entry.get("key") != key):
        return None
    return entry


def save(root: Path, name: str, entry: dict) -> None:
    """Write `entry` to `<root>/cache/<name>.pt` atomically; silently skip if it cannot be written.

    A cache is an optimisation: a read-only folder or a full disk (torch reports that as a
    RuntimeError) means the data is decoded again next time, never an error, and no temporary
    file is left behind.
    """
    try:
        with atomic_write(root / "cache" / f"{name}.pt", durable=False) as fh:
            torch.save(entry, fh)
    except (OSError, RuntimeError):  # Ctrl-C, or a real bug, is not ours to hide
        return
