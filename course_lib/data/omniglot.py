"""Omniglot for few-shot learning: 1623 handwritten characters x 20 drawers, 28x28, ink = 1.0.

    train = load_omniglot("train")   # (1200, 20, 1, 28, 28) float32 in [0, 1]
    test = load_omniglot("test")     # (423, 20, 1, 28, 28)

The split has the sizes of the usual few-shot protocol (Vinyals et al. 2016, used by MAML, Finn et al.
2017): 1200 characters for meta-training and the remaining 423 for meta-testing. It is deterministic
and needs no seed: all 1623 characters in the order background (964) then evaluation (659), each sorted
by alphabet folder then character folder; the first 1200 are "train" (all 964 background characters and
the first 236 evaluation characters), the last 423 are "test". So the test characters come from 13 of
the 20 evaluation alphabets, and one alphabet, Gurmukhi, is on both sides (its first 41 characters in
train, its last 4 in test): test characters are new, not all their alphabets. (cbfinn/maml shuffles the
characters with Python's `random.seed(1)` instead, so its test characters come from nearly every
alphabet; here most come from alphabets never seen in training: the same sizes, a different split.) Training
classes are augmented with rotations by multiples of 90 degrees when sampling episodes
(`sample_episodes(..., rotate=True)`), not here.

Source: `<root>/omniglot-py/images_background/<Alphabet>/<characterNN>/<id>_<drawer>.png` and
`images_evaluation/...` (the official PNG tree), or the official zips if `download=True`. The
105x105 drawings are turned to ink = 1.0 and resized once to 28x28 with an antialiased bilinear
filter; the result is cached in `<root>/cache/omniglot-28.pt`, rebuilt when a character folder
changes, and used on its own when the PNG tree has been removed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_lib import runtime
from course_lib.data import cache
from course_lib.data.download import Archive, CorruptDataError, ensure

FOLDER = "omniglot-py"
BACKGROUND, EVALUATION = "images_background", "images_evaluation"
_PREFIX = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
ARCHIVES = {
    BACKGROUND: Archive(f"{_PREFIX}/images_background.zip", "images_background.zip", "68d2efa1b9178cc56df9314c21c6e718"),
    EVALUATION: Archive(f"{_PREFIX}/images_evaluation.zip", "images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811"),
}
N_TRAIN = 1200  # meta-training characters in the MAML split; the rest are meta-test
# Characters per alphabet in the official release (964 background, 659 evaluation). The split is by position
# in this order, so one missing alphabet would move characters between train and test without a word.
ALPHABETS = {
    BACKGROUND: {
        "Alphabet_of_the_Magi": 20, "Anglo-Saxon_Futhorc": 29, "Arcadian": 26, "Armenian": 41,
        "Asomtavruli_(Georgian)": 40, "Balinese": 24, "Bengali": 46, "Blackfoot_(Canadian_Aboriginal_Syllabics)": 14,
        "Braille": 26, "Burmese_(Myanmar)": 34, "Cyrillic": 33, "Early_Aramaic": 22, "Futurama": 26, "Grantha": 43,
        "Greek": 24, "Gujarati": 48, "Hebrew": 22, "Inuktitut_(Canadian_Aboriginal_Syllabics)": 16,
        "Japanese_(hiragana)": 52, "Japanese_(katakana)": 47, "Korean": 40, "Latin": 26, "Malay_(Jawi_-_Arabic)": 40,
        "Mkhedruli_(Georgian)": 41, "N_Ko": 33, "Ojibwe_(Canadian_Aboriginal_Syllabics)": 14, "Sanskrit": 42,
        "Syriac_(Estrangelo)": 23, "Tagalog": 17, "Tifinagh": 55},
    EVALUATION: {
        "Angelic": 20, "Atemayar_Qelisayer": 26, "Atlantean": 26, "Aurek-Besh": 26, "Avesta": 26, "Ge_ez": 26,
        "Glagolitic": 45, "Gurmukhi": 45, "Kannada": 41, "Keble": 26, "Malayalam": 47, "Manipuri": 40,
        "Mongolian": 30, "Old_Church_Slavonic_(Cyrillic)": 45, "Oriya": 46, "Sylheti": 28, "Syriac_(Serto)": 23,
        "Tengwar": 25, "Tibetan": 42, "ULOG": 26},
}
SIZE = 28  # pixels: the resolution MAML and ProtoNet use
CACHE_NAME = f"omniglot-{SIZE}"


def _characters(folder: Path) -> list[Path]:
    """Character folders of one half, sorted by (alphabet, character)."""
    return [c for a in sorted(p for p in folder.iterdir() if p.is_dir())
            for c in sorted(p for p in a.iterdir() if p.is_dir())]


def _check_alphabets(base: Path, chars: list[Path]) -> None:
    """Raise CorruptDataError naming each alphabet that is missing, extra or short of characters."""
    found: dict[str, dict[str, int]] = {BACKGROUND: {}, EVALUATION: {}}
    for c in chars:
        found[c.parent.parent.name][c.parent.name] = found[c.parent.parent.name].get(c.parent.name, 0) + 1
    problems = []
    for half, expected in ALPHABETS.items():
        for alphabet in sorted(expected.keys() | found[half].keys()):
            want, got = expected.get(alphabet, 0), found[half].get(alphabet, 0)
            if want != got:
                problems.append(f"{half}/{alphabet}: {got} characters, expected {want}")
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise CorruptDataError(
            f"Omniglot in {base} is not the official release ({shown}). The train/test split is by position, so it "
            "would shift silently. Delete the folder and load again to download it (or re-run materialize.py).")


def _tree_key(chars: list[Path]) -> list:
    """What the cache was decoded from and how: the resize, then [name, folder mtime] per character.

    A folder's modification time changes when a drawing in it is added, removed or replaced by a new
    file (as copying or re-materialising the data does), so such a change rebuilds the cache; this
    costs one stat per character (1623), not per drawing (32,460).
    """
    return [[f"{SIZE}x{SIZE} bilinear antialias, ink = 1", 0]] + [
        ["/".join(c.parts[-3:]), c.stat().st_mtime_ns] for c in chars]


def _read_drawing(path: Path) -> np.ndarray:
    """(105, 105) float32 gray levels of one drawing; a damaged file is a CorruptDataError that names it."""
    from PIL import Image, UnidentifiedImageError  # Pillow is a dependency; imported here to keep the import light

    try:
        with Image.open(path) as img:
            gray = np.asarray(img.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:  # Pillow's errors for unreadable files
        raise CorruptDataError(f"{path} is not a readable Omniglot drawing ({type(exc).__name__}: {exc}). Delete "
                               f"{path.parents[2]} and load again to download the official archive (or re-run "
                               "materialize.py).") from exc
    if gray.shape != (105, 105):
        raise CorruptDataError(f"{path} is {gray.shape[1]}x{gray.shape[0]} pixels; Omniglot drawings are 105x105. "
                               f"Delete {path.parents[2]} and load again.")
    return gray


def _decode(chars: list[Path]) -> torch.Tensor:
    """(len(chars), 20, 1, 28, 28) float32 ink images from the PNG folders."""
    out = torch.empty(len(chars), 20, 1, SIZE, SIZE)
    for start in range(0, len(chars), 64):  # chunks keep the 105x105 float images at ~56 MB
        block = chars[start:start + 64]
        raw = np.empty((len(block), 20, 105, 105), dtype=np.float32)
        for c, folder in enumerate(block):
            files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
            if len(files) != 20:
                raise ValueError(f"{folder} holds {len(files)} drawings, expected 20; the Omniglot tree is damaged.")
            for d, name in enumerate(files):
                raw[c, d] = _read_drawing(folder / name)
        ink = 1.0 - torch.from_numpy(raw).div_(255.0)  # paper is white (1) in the PNGs; we want ink = 1
        small = F.interpolate(ink.view(-1, 1, 105, 105), size=(SIZE, SIZE), mode="bilinear", antialias=True)
        out[start:start + len(block)] = small.clamp_(0.0, 1.0).view(len(block), 20, 1, SIZE, SIZE)
    return out


def load_omniglot(split: str = "train", root: str | Path | None = None, download: bool = True,
                  timeout: float = 60.0, with_names: bool = False):
    """The MAML split of Omniglot: "train" (1200 characters) or "test" (423), as a CPU tensor.

    Returns images (C, 20, 1, 28, 28) float32 in [0, 1] with ink = 1.0 (C = 1200 or 423); with
    `with_names=True`, also the list of "<half>/<Alphabet>/<characterNN>" names, in the same order.
    root: the data folder (default: COURSE_DATA_DIR). download: fetch the official zips if missing.
    Raises DataNotFoundError (naming the folder searched and how to provide the data) if absent.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    root = Path(root).expanduser() if root is not None else runtime.data_dir()
    base = root / FOLDER
    cached = None
    if not any((base / half).is_dir() for half in (BACKGROUND, EVALUATION)):
        # No PNG tree (deleted after decoding, say): a cache built earlier is all there is to trust.
        cached = cache.load(root, CACHE_NAME, None)
    if cached is None or not {"names", "images"} <= cached.keys():
        ensure(root, "Omniglot", base, lambda: [half for half in (BACKGROUND, EVALUATION) if not (base / half).is_dir()],
               lambda absent: [ARCHIVES[half] for half in absent], base, download, timeout)
        chars = _characters(base / BACKGROUND) + _characters(base / EVALUATION)
        _check_alphabets(base, chars)
        key = _tree_key(chars)
        cached = cache.load(root, CACHE_NAME, key)
        if cached is None:
            cached = {"key": key, "names": [name for name, _ in key[1:]], "images": _decode(chars)}
            cache.save(root, CACHE_NAME, cached)
    part = slice(0, N_TRAIN) if split == "train" else slice(N_TRAIN, None)
    images = cached["images"][part]
    return (images, cached["names"][part]) if with_names else images


__all__ = ["load_omniglot", "N_TRAIN"]
