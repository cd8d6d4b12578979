"""Loaders on tiny fixtures in the official formats: checksums, cache, offline errors, verified
downloads through file:// URLs, safe extraction, the Omniglot split, seeded subsets."""

import io
import os
import pickle
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib.data import (CIFAR10_CLASSES, CorruptDataError, DataIntegrityWarning, DataNotFoundError, class_subset, load_cifar10,
                             load_omniglot)
from course_lib.data import cifar10 as cifar_mod
from course_lib.data import download as dl
from course_lib.data import omniglot as omni_mod

PER_BATCH = 20


def _write_cifar(folder: Path) -> dict:
    """Official-format batches with PER_BATCH images each; pixel (0, 0, 0) encodes the image index."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = np.random.default_rng(b).integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        data[:, 0] = np.arange(PER_BATCH) + b * PER_BATCH
        labels = [i % 10 for i in range(PER_BATCH)]
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "data": data, "labels": labels,
                         "filenames": [f"{i}.png" for i in range(PER_BATCH)]}, fh, protocol=2)
        expected[name] = data
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, fh)
    return expected


def _official(monkeypatch, folder):
    """Pretend the fixture files are the official ones."""
    monkeypatch.setattr(cifar_mod, "FILE_MD5", {f.name: dl.md5sum(f) for f in folder.iterdir()})


def test_cifar_reads_official_layout_in_official_order(tmp_path, monkeypatch):
    data = _write_cifar(tmp_path / "cifar-10-batches-py")
    _official(monkeypatch, tmp_path / "cifar-10-batches-py")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # official checksums: no warning at all
        x, y = load_cifar10("train", root=tmp_path, download=False)
    assert x.shape == (5 * PER_BATCH, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert torch.equal(x[PER_BATCH + 3].flatten(), torch.from_numpy(data["data_batch_2"][3]))  # R, G, B planes
    assert x[:, 0, 0, 0].tolist() == list(range(5 * PER_BATCH))
    xt, yt = load_cifar10("test", root=tmp_path, download=False)
    assert xt.shape == (PER_BATCH, 3, 32, 32) and yt.tolist() == [i % 10 for i in range(PER_BATCH)]


def test_cifar_checksum_mismatch_loads_with_exactly_one_warning(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    for attempt in range(2):  # decoded, then from the cache: the warning comes every time, once
        with pytest.warns(DataIntegrityWarning) as record:
            x, _ = load_cifar10("train", root=tmp_path, download=False)
        assert len(record) == 1 and "official" in str(record[0].message) and "differ" in str(record[0].message)
        assert x.shape[0] == 5 * PER_BATCH


def test_cifar_second_load_uses_the_cache_and_notices_changes(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    _official(monkeypatch, folder)
    first = load_cifar10("train", root=tmp_path)
    assert (tmp_path / "cache" / "cifar10-train.pt").is_file()
    decode = cifar_mod._decode
    monkeypatch.setattr(cifar_mod, "_decode", lambda *a: pytest.fail("decoded again despite a valid cache"))
    start = time.perf_counter()
    second = load_cifar10("train", root=tmp_path)
    assert time.perf_counter() - start < 1.0
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    monkeypatch.setattr(cifar_mod, "_decode", decode)
    with open(folder / "data_batch_3", "ab") as fh:  # the source changed: the cache must be rebuilt
        fh.write(b"\0")
    with pytest.warns(DataIntegrityWarning, match="data_batch_3"):
        load_cifar10("train", root=tmp_path)


def test_cifar_absent_offline_names_folder_and_remedy(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_cifar10("train", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "materialize.py" in message and "COURSE_DATA_DIR" in message


def test_cifar_bad_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_cifar10("val")


def _tar_fixture(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    _write_cifar(src / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_cifar_download_verifies_renames_and_extracts(tmp_path, monkeypatch):
    archive = _tar_fixture(tmp_path)
    monkeypatch.setattr(cifar_mod, "ARCHIVE", dl.Archive(archive.as_uri(), "cifar-10-python.tar.gz", dl.md5sum(archive)))
    root = tmp_path / "data"
    with pytest.warns(DataIntegrityWarning):
        x, y = load_cifar10("test", root=root, download=True)
    assert x.shape == (PER_BATCH, 3, 32, 32)
    assert (root / "cifar-10-python.tar.gz").is_file() and not list(root.glob(".*.tmp"))  # no temporary file left


def test_download_with_wrong_md5_leaves_nothing_and_says_so(tmp_path, monkeypatch):
    archive = _tar_fixture(tmp_path)
    monkeypatch.setattr(cifar_mod, "ARCHIVE", dl.Archive(archive.as_uri(), "cifar-10-python.tar.gz", "0" * 32))
    root = tmp_path / "data"
    with pytest.raises(DataNotFoundError, match="MD5") as info:
        load_cifar10("train", root=root)
    assert "materialize.py" in str(info.value)
    assert not (root / "cifar-10-python.tar.gz").exists() and not list(root.glob(".*.tmp"))


def test_download_failure_is_reported_with_the_url(tmp_path):
    missing = dl.Archive((tmp_path / "nope.tar.gz").as_uri(), "nope.tar.gz", "0" * 32)
    with pytest.raises(dl.DownloadError, match="could not download .*nope.tar.gz"):
        dl.download(missing, tmp_path / "out", timeout=5)
    assert not list((tmp_path / "out").iterdir())


def test_download_passes_the_timeout(tmp_path, monkeypatch):
    seen = {}

    def opener(url, timeout):
        seen["timeout"] = timeout
        return io.BytesIO(b"hello")

    monkeypatch.setattr(dl.urllib.request, "urlopen", opener)
    import hashlib
    path = dl.download(dl.Archive("https://example.invalid/x", "x.bin", hashlib.md5(b"hello").hexdigest()), tmp_path, timeout=7)
    assert seen["timeout"] == 7 and path.read_bytes() == b"hello"


def test_a_connection_cut_mid_download_is_a_download_error_and_leaves_nothing(tmp_path, monkeypatch):
    import http.client

    class Cut(io.BytesIO):
        def read(self, *args):
            raise http.client.IncompleteRead(b"partial", 100)

    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, timeout: Cut())
    with pytest.raises(dl.DownloadError, match="could not download .*IncompleteRead"):
        dl.download(dl.Archive("https://example.invalid/x", "x.bin", "0" * 32), tmp_path, timeout=1)
    assert list(tmp_path.iterdir()) == []


def test_cache_write_failure_is_silent_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    from course_lib.data import cache

    def full_disk(obj, f):
        f.write(b"half")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(cache.torch, "save", full_disk)
    cache.save(tmp_path, "entry", {"key": 1})
    assert list((tmp_path / "cache").iterdir()) == []
    assert cache.load(tmp_path, "entry", 1) is None


def test_extract_refuses_paths_outside_the_target(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(dl.DownloadError, match="outside"):
        dl.extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tf:
        info = tarfile.TarInfo("innocent")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(dl.DownloadError, match="only files and folders"):
        dl.extract(link, tmp_path / "out2")
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("../../escaped.txt", "bad")
    with pytest.raises(dl.DownloadError, match="outside"):
        dl.extract(evil_zip, tmp_path / "out3")


def test_class_subset_is_seeded_and_balanced():
    labels = torch.arange(10).repeat(30)
    images = torch.arange(300)
    a = class_subset(images, labels, per_class=7, seed=3)
    b = class_subset(images, labels, per_class=7, seed=3)
    c = class_subset(images, labels, per_class=7, seed=4)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert torch.bincount(a[1]).tolist() == [7] * 10
    assert torch.equal(labels[a[0]], a[1]) and len(set(a[0].tolist())) == 70
    assert a[1][:10].tolist() != sorted(a[1][:10].tolist()) or a[1][10:20].tolist() != sorted(a[1][10:20].tolist())
    with pytest.raises(ValueError, match="only 30 images"):
        class_subset(images, labels, per_class=31)


# Omniglot: 3 + 2 characters in background, 2 in evaluation; the split is moved to 4 train / 3 test.
TREE = {"images_background": {"Beta": 2, "Alpha": 3}, "images_evaluation": {"Gamma": 2}}


def _write_omniglot(base: Path):
    code = 0
    for half in sorted(TREE):
        for alphabet in sorted(TREE[half]):
            for c in range(TREE[half][alphabet]):
                folder = base / half / alphabet / f"character{c + 1:02d}"
                folder.mkdir(parents=True)
                for d in range(20):
                    paper = np.ones((105, 105), dtype=bool)
                    paper[: 30 + 8 * code, :50] = False  # ink block whose height encodes the character
                    Image.fromarray(paper).save(folder / f"{code:04d}_{d + 1:02d}.png")
                code += 1


def test_omniglot_split_order_ink_and_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(omni_mod, "N_TRAIN", 4)
    monkeypatch.setattr(omni_mod, "ALPHABETS", TREE)
    _write_omniglot(tmp_path / "omniglot-py")
    train, names = load_omniglot("train", root=tmp_path, with_names=True)
    test = load_omniglot("test", root=tmp_path)
    assert train.shape == (4, 20, 1, 28, 28) and test.shape == (3, 20, 1, 28, 28) and train.dtype == torch.float32
    assert names == ["images_background/Alpha/character01", "images_background/Alpha/character02",
                     "images_background/Alpha/character03", "images_background/Beta/character01"]
    assert train.min() >= 0 and train.max() <= 1
    assert train[0, 0, 0, 0, 0] > 0.99 and train[0, 0, 0, -1, -1] < 0.01  # ink = 1 on white paper
    ink = torch.cat([train, test]).mean(dim=(1, 2, 3, 4))
    assert (ink.diff() > 0).all(), "characters are not in background-then-evaluation, sorted order"
    monkeypatch.setattr(omni_mod, "_decode", lambda *a: pytest.fail("decoded again despite a valid cache"))
    start = time.perf_counter()
    assert torch.equal(load_omniglot("train", root=tmp_path), train)
    assert time.perf_counter() - start < 1.0


def test_omniglot_cache_is_rebuilt_when_a_drawing_changes_and_used_alone_without_the_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(omni_mod, "N_TRAIN", 4)
    monkeypatch.setattr(omni_mod, "ALPHABETS", TREE)
    base = tmp_path / "omniglot-py"
    _write_omniglot(base)
    before = load_omniglot("test", root=tmp_path)
    # Replace one drawing of the last character by a blank page, as re-providing the data would.
    folder = base / "images_evaluation" / "Gamma" / "character02"
    drawing = sorted(folder.iterdir())[0]
    blank, stamp = folder / "new.tmp", folder.stat().st_mtime_ns
    Image.fromarray(np.ones((105, 105), dtype=bool)).save(blank, format="PNG")
    blank.replace(drawing)
    if folder.stat().st_mtime_ns == stamp:  # a coarse file-system clock: make the change visible
        os.utime(folder, ns=(stamp + 10**9, stamp + 10**9))
    after = load_omniglot("test", root=tmp_path)
    assert after[-1, 0].sum() == 0 and before[-1, 0].sum() > 0, "a stale cache was used after the data changed"
    assert torch.equal(after[:, 1:], before[:, 1:])
    # Without the PNG tree the cache alone serves the data, with no download attempted.
    import shutil
    shutil.rmtree(base)
    monkeypatch.setattr(omni_mod, "_decode", lambda *a: pytest.fail("decoded without a tree"))
    assert torch.equal(load_omniglot("test", root=tmp_path, download=False), after)


def test_omniglot_downloads_official_zips(tmp_path, monkeypatch):
    monkeypatch.setattr(omni_mod, "N_TRAIN", 4)
    monkeypatch.setattr(omni_mod, "ALPHABETS", TREE)
    _write_omniglot(tmp_path / "src")
    archives = {}
    for half in TREE:
        path = tmp_path / f"{half}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for f in sorted((tmp_path / "src" / half).rglob("*.png")):
                zf.write(f, f.relative_to(tmp_path / "src").as_posix())
        archives[half] = dl.Archive(path.as_uri(), f"{half}.zip", dl.md5sum(path))
    monkeypatch.setattr(omni_mod, "ARCHIVES", archives)
    test = load_omniglot("test", root=tmp_path / "data")
    assert test.shape == (3, 20, 1, 28, 28)


def test_omniglot_absent_offline_names_folder_and_remedy(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_omniglot("train", root=tmp_path, download=False)
    assert str(tmp_path / "omniglot-py") in str(info.value) and "COURSE_DATA_DIR" in str(info.value)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_omniglot("val", root=tmp_path)


class _RunsCode:
    """What a tampered "batch" might hold: unpickling it would call open(marker, "w")."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_tampered_cifar_batch_is_refused_without_running_its_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    marker = tmp_path / "pwned"
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": _RunsCode(marker), "labels": [0]}, fh, protocol=2)
    with pytest.raises(CorruptDataError, match=r"test_batch.*refused, not run"):
        load_cifar10("test", root=tmp_path, download=False)
    assert not marker.exists()


@pytest.mark.parametrize("damage, words", [
    (lambda raw: raw[: len(raw) // 2], "not a readable CIFAR-10 batch"),  # truncated mid-copy
    (lambda raw: pickle.dumps({"data": [1, 2, 3], "labels": [0]}), "not a CIFAR-10 batch"),  # a pickle, wrong content
])
def test_a_damaged_cifar_batch_names_the_file_and_the_remedy(tmp_path, damage, words):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "test_batch").write_bytes(damage((folder / "test_batch").read_bytes()))
    with pytest.raises(CorruptDataError, match=words) as info:
        load_cifar10("test", root=tmp_path, download=False)
    assert "test_batch" in str(info.value) and "download the official archive again" in str(info.value)


def test_a_damaged_omniglot_drawing_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(omni_mod, "N_TRAIN", 4)
    monkeypatch.setattr(omni_mod, "ALPHABETS", TREE)
    base = tmp_path / "omniglot-py"
    _write_omniglot(base)
    victim = sorted((base / "images_background").rglob("*.png"))[7]
    victim.write_bytes(victim.read_bytes()[:40])  # a copy cut short
    with pytest.raises(CorruptDataError, match=rf"{victim.name} is not a readable Omniglot drawing.*Delete"):
        load_omniglot("train", root=tmp_path, download=False)


def test_omniglot_alphabets_add_up_to_the_official_release():
    counts = {half: sum(alphabets.values()) for half, alphabets in omni_mod.ALPHABETS.items()}
    assert counts == {"images_background": 964, "images_evaluation": 659} and omni_mod.N_TRAIN == 1200


def test_a_missing_omniglot_alphabet_is_named_instead_of_shifting_the_split(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(omni_mod, "N_TRAIN", 4)
    monkeypatch.setattr(omni_mod, "ALPHABETS", TREE)
    base = tmp_path / "omniglot-py"
    _write_omniglot(base)
    shutil.rmtree(base / "images_background" / "Alpha")
    with pytest.raises(CorruptDataError, match=r"images_background/Alpha: 0 characters, expected 3.*split"):
        load_omniglot("test", root=tmp_path, download=False)
