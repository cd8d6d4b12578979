"""Verified downloads: fetch to a temporary name, check the MD5, rename, extract safely.

Every dataset loader in `course_lib.data` goes through here, so the rules live in one place:

- a download is written to a unique `.<name>.*.tmp` file and renamed only once it is complete and
  its MD5 matches the official sum, so an interrupted or corrupted download never looks like a good
  file, and two processes downloading at once never write into the same file;
- the connection has a timeout, and a failure says what was fetched, from where, and what to do;
- archives are extracted only if every member lands inside the target folder (no `../`, no absolute
  paths, no links), so a malicious archive cannot write elsewhere.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from course_lib.checkpoint import atomic_write


def provide_help(root) -> str:
    """How to provide data for the data folder `root` without internet (for error messages)."""
    return (f"To provide the data without internet, run `python ../shared/data/materialize.py {root}` (from the "
            f"repo) or copy the official folders into {root}, and set COURSE_DATA_DIR={root} (or pass root=...).")


class DataNotFoundError(FileNotFoundError):
    """A dataset is not on disk and could not be downloaded; the message says where we looked."""


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match the official one."""


class CorruptDataError(ValueError):
    """A data file on disk is damaged, truncated or not what it claims to be; the message names it."""


@dataclass(frozen=True)
class Archive:
    """An official archive: where it lives, its file name and its official MD5."""

    url: str
    filename: str
    md5: str


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(archive: Archive, folder: str | os.PathLike, timeout: float = 60.0) -> Path:
    """Fetch `archive` into `folder` (verified) and return its path; an existing good copy is kept.

    Raises DownloadError if the connection fails or the MD5 differs from the official one; the
    partial file is removed in both cases (`atomic_write`: the good name appears only when complete).
    """
    target = Path(folder) / archive.filename
    if target.is_file() and md5sum(target) == archive.md5:
        return target
    try:
        with atomic_write(target) as out, urllib.request.urlopen(archive.url, timeout=timeout) as response:
            digest = hashlib.md5()
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            if digest.hexdigest() != archive.md5:
                raise DownloadError(
                    f"{archive.url} downloaded, but its MD5 is {digest.hexdigest()}, not the official {archive.md5}: "
                    "the file is corrupted or was changed upstream, so it was deleted. Try again later.")
    # URLError, timeouts and disk errors are OSErrors; a connection cut mid-body is an HTTPException
    # (IncompleteRead); a malformed URL is a ValueError.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"could not download {archive.url} into {folder}: {exc}") from exc
    return target


def _inside(folder: Path, name: str) -> Path:
    dest = (folder / name).resolve()
    if dest != folder and folder not in dest.parents:
        raise DownloadError(f"refusing to extract {name!r}: it would land outside {folder}.")
    return dest


def extract(path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Extract a .tar.gz/.tgz/.tar or .zip into `folder`, refusing members that escape it or are links."""
    path, folder = Path(path), Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                _inside(folder, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(f"refusing to extract {info.filename!r} from {path}: it is a symbolic link.")
            zf.extractall(folder)
        return folder
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            members = tf.getmembers()
            for m in members:
                _inside(folder, m.name)
                if not (m.isfile() or m.isdir()):
                    raise DownloadError(f"refusing to extract {m.name!r} from {path}: only files and folders are allowed.")
            # members were checked above; the "data" filter (Python >= 3.11.4) re-checks them and drops odd modes
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(folder, members=members, **extra)
        return folder
    raise DownloadError(f"{path} is neither a zip nor a tar archive; delete it and download again.")


def ensure(root: Path, name: str, folder: Path, missing: Callable[[], list[str]],
           archives_for: Callable[[list[str]], list[Archive]], into: Path, download_allowed: bool, timeout: float) -> None:
    """Make sure a dataset is on disk: if `missing()` names anything absent from `folder`, fetch
    `archives_for(missing)` (verified) into the folder `into` and extract them there.

    Raises DataNotFoundError that names what was looked for, where, and how to provide the data:
    downloads off, a failed download, or archives that lack what was missing.
    """
    absent = missing()
    if not absent:
        return
    where = f"{name} not found: looked for {', '.join(absent)} in {folder}."
    if not download_allowed:
        raise DataNotFoundError(f"{where} Downloads are off (download=False). {provide_help(root)}")
    try:
        for archive in archives_for(absent):
            extract(download(archive, into, timeout=timeout), into)
    except DownloadError as exc:
        raise DataNotFoundError(f"{where} The download failed too ({exc}). {provide_help(root)}") from exc
    still = missing()
    if still:
        raise DataNotFoundError(f"{where} The official archives were extracted but lack {', '.join(still)}; delete "
                                f"the downloaded archives in {into} and try again.")


__all__ = ["Archive", "CorruptDataError", "DataNotFoundError", "DownloadError", "provide_help", "md5sum", "download", "extract", "ensure"]
