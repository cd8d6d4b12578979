"""Verified downloads: fetch to a temporary name, check the MD5, rename, extract safely.

Every dataset loader in `course_lib.data` goes through here, so the rules live in one place:

- a download is written to a unique `.<name>.*.part` file and renamed only once it is complete and
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
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


def provide_help(root) -> str:
    """How to provide data for the data folder `root` without internet (for error messages)."""
    return (f"To provide the data without internet, run `python ../shared/data/materialize.py {root}` (from the "
            f"repo) or copy the official folders into {root}, and set COURSE_DATA_DIR={root} (or pass root=...).")


class DataNotFoundError(FileNotFoundError):
    """A dataset is not on disk and could not be downloaded; the message says where we looked."""


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match the official one."""


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
    partial file is removed in both cases.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / archive.filename
    if target.is_file() and md5sum(target) == archive.md5:
        return target
    fd, name = tempfile.mkstemp(prefix=f".{archive.filename}.", suffix=".part", dir=folder)
    part = Path(name)
    try:
        with urllib.request.urlopen(archive.url, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    # URLError, timeouts and disk errors are OSErrors; a connection cut mid-body is an HTTPException
    # (IncompleteRead); a malformed URL is a ValueError.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not download {archive.url} into {folder}: {exc}") from exc
    except BaseException:  # Ctrl-C in a notebook: leave no partial file behind either
        part.unlink(missing_ok=True)
        raise
    got = md5sum(part)
    if got != archive.md5:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive.url} downloaded, but its MD5 is {got}, not the official {archive.md5}: the file is "
            f"corrupted or was changed upstream, so it was deleted. Try again later."
        )
    os.replace(part, target)  # atomic on one filesystem: the good name appears only when complete
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


def fetch_and_extract(archive: Archive, folder: str | os.PathLike, timeout: float = 60.0) -> Path:
    """Download `archive` into `folder` (verified) and extract it there; returns `folder`."""
    return extract(download(archive, folder, timeout=timeout), folder)


__all__ = ["Archive", "DataNotFoundError", "DownloadError", "provide_help", "md5sum", "download", "extract",
           "fetch_and_extract"]
