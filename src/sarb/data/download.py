"""``sarb data download coco2014|voc2007|vg --root DIR``: fetch and extract the official archives.

(``nuswide``: its images are given out on request; the command says what to fetch by hand and
where to put it, and checks the folder once it is there.)

Downloads stream with urllib into ``<file>.part`` (a tqdm bar on stderr) and resume with an HTTP
``Range`` request when rerun; a finished file is checked against its size and MD5 where a
published value is known, renamed into place, then extracted into ``DIR`` with zipfile/tarfile
(``DIR/.<archive>.extracted`` marks an extraction as done). An archive already in ``DIR`` (e.g.
fetched by hand) is not downloaded again. Without network the command stops with one line that
names the URLs to fetch by hand and the folder to put them in.
"""

from __future__ import annotations

import hashlib
import http.client
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from sarb import __version__
from sarb.errors import SarbError

CHUNK = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class Archive:
    """One file to fetch: its name in the root folder, its URLs (mirrors in order), checks."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None  # None: no published checksum known
    size: int | None = None  # bytes; None: unknown


# MD5s: VOC's are those torchvision verifies. COCO publishes none on its site; the COCO values
# below are the ones PaddleDetection, mmocr and others verify (the annotations' one is also the
# ETag, i.e. the MD5, of the S3 object). Visual Genome publishes no checksums: none are checked.
ARCHIVES: dict[str, tuple[Archive, ...]] = {
    "coco2014": (
        Archive(
            "train2014.zip",
            ("http://images.cocodataset.org/zips/train2014.zip",),
            "0da8c0bd3d6becc4dcb32757491aca88",
        ),
        Archive(
            "val2014.zip",
            ("http://images.cocodataset.org/zips/val2014.zip",),
            "a3d79f5ed8d289b7a7554ce06a5782b3",
        ),
        Archive(
            "annotations_trainval2014.zip",
            ("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",),
            "0a379cfc70b0e71301e0f377548639bd",
            252_872_794,
        ),
    ),
    "voc2007": (
        Archive(
            "VOCtrainval_06-Nov-2007.tar",
            ("http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",),
            "c52e279531787c972589f7e41ab4ae64",
        ),
        Archive(
            "VOCtest_06-Nov-2007.tar",
            ("http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",),
            "b6e924de25625d8de591ea690078ad9f",
        ),
    ),
    "vg": (
        Archive("images.zip", ("https://cs.stanford.edu/people/rak248/VG_100K_2/images.zip",)),
        Archive("images2.zip", ("https://cs.stanford.edu/people/rak248/VG_100K_2/images2.zip",)),
        Archive(
            "objects.json.zip",
            (
                "https://homes.cs.washington.edu/~ranjay/visualgenome/data/dataset/objects.json.zip",
                "http://visualgenome.org/static/data/dataset/objects.json.zip",
            ),
        ),
    ),
}

NEXT_STEP = {
    "coco2014": "sarb train --dataset coco2014 --root {root}",
    "voc2007": "sarb train --dataset voc2007 --root {root}",
    "vg": "sarb data build-vg200 --images {root} --objects {root}/objects.json --out {root}/vg200",
}


class Offline(Exception):
    """A URL could not be reached at all (no network, DNS failure, refused connection)."""


def download_dataset(
    name: str, root: str | Path, verify: bool = True, delete_archives: bool = False
) -> str:
    """Fetch and extract every archive of dataset ``name`` into ``root``; the next command.

    Raises a one-line SarbError (which names the URLs to fetch by hand) without network.
    """
    if name == "nuswide":  # given out on request: nothing to download, the files are checked
        from sarb.data.nuswide import check_download

        return check_download(root)
    if name not in ARCHIVES:
        raise SarbError(
            f"unknown dataset {name!r} to download: choose from {', '.join(ARCHIVES)}, nuswide"
        )
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SarbError(f"{root}: cannot create the folder ({exc.strerror or exc})") from None
    archives = ARCHIVES[name]
    for i, archive in enumerate(archives):
        dest = root / archive.filename
        if _extracted_marker(dest).exists():
            continue
        if not dest.is_file():
            try:
                fetch(archive, dest, verify=verify)
            except Offline as exc:
                todo = [
                    a
                    for a in archives[i:]
                    if not (root / a.filename).is_file()
                    and not _extracted_marker(root / a.filename).exists()
                ]
                urls = " ".join(a.urls[0] for a in todo)
                raise SarbError(
                    f"cannot download ({exc}); fetch by hand {urls} into {root}/ and rerun"
                    f" `sarb data download {name} --root {root}` to verify and extract them"
                ) from None
        elif verify:
            try:
                check_file(dest, archive)
            except SarbError as exc:
                raise SarbError(
                    f"{exc}; delete it and rerun (or pass --no-verify if it is known to be good)"
                ) from None
        extract(dest, root)
        if delete_archives:
            dest.unlink()
    return NEXT_STEP[name].format(root=root)


def fetch(archive: Archive, dest: Path, verify: bool = True) -> Path:
    """Download ``archive`` to ``dest`` via ``dest.part``, resuming it, trying each mirror."""
    errors = []
    for url in archive.urls:
        try:
            _fetch_url(url, dest, archive.size)
            break
        except Offline as exc:
            errors.append(f"{url}: {exc}")
    else:
        raise Offline("; ".join(errors))
    part = _part(dest)
    if verify:
        try:
            check_file(part, archive)
        except SarbError as exc:
            part.unlink(missing_ok=True)  # a corrupt download cannot be resumed: start over
            raise SarbError(f"{exc}; the download was deleted, rerun to fetch it again") from None
    part.replace(dest)
    return dest


def check_file(path: Path, archive: Archive) -> None:
    """Size and MD5 of a downloaded archive, where known; SarbError on a mismatch."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        raise SarbError(f"{path}: {size} bytes, expected {archive.size}")
    if archive.md5 is not None:
        got = md5sum(path)
        if got != archive.md5:
            raise SarbError(f"{path}: MD5 {got}, expected {archive.md5}")


def md5sum(path: Path) -> str:
    """The MD5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def extract(archive: Path, into: Path) -> None:
    """Extract a zip or tar archive into ``into`` once (a marker file records it)."""
    marker = _extracted_marker(archive, into)
    if marker.exists():
        return
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:  # extractall drops absolute and ".." parts
                members = zf.infolist()
                for info in tqdm(members, desc=f"extract {archive.name}", unit="file"):
                    zf.extract(info, into)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for member in tqdm(members, desc=f"extract {archive.name}", unit="file"):
                    _extract_tar_member(tf, member, into)
        else:
            raise SarbError(
                f"{archive}: not a zip or tar archive (a broken download? delete it and rerun)"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise SarbError(f"{archive}: corrupt archive ({exc}); delete it and rerun") from None
    except OSError as exc:
        raise SarbError(f"{archive}: cannot extract into {into} ({exc.strerror or exc})") from None
    marker.write_text("")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _extracted_marker(archive: Path, into: Path | None = None) -> Path:
    return (into if into is not None else archive.parent) / f".{archive.name}.extracted"


def _extract_tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, into: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: safe by construction
        tf.extract(member, into, filter="data")
        return
    target = (into / member.name).resolve()
    if not target.is_relative_to(into.resolve()) or member.issym() or member.islnk():
        raise SarbError(f"{tf.name}: unsafe member {member.name!r}; not extracting")
    tf.extract(member, into)


def _fetch_url(url: str, dest: Path, size: int | None) -> None:
    """Stream ``url`` into ``dest.part``, appending to what is there if the server resumes."""
    part = _part(dest)
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset == size:
        return  # complete already; verified by the caller
    request = urllib.request.Request(url, headers={"User-Agent": f"sarb/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the part is complete
            return
        raise Offline(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise Offline(getattr(exc, "reason", None) or exc) from None
    with response:
        resumed = bool(offset) and getattr(response, "status", None) == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            raise SarbError(f"cannot resume {url}: unexpected Content-Range; delete {part}")
        if not resumed:
            offset = 0  # the server sent the whole file (file:// URLs and servers without Range)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else size
        try:
            f = open(part, "ab" if resumed else "wb")
        except OSError as exc:
            raise SarbError(f"{part}: cannot write ({exc.strerror or exc})") from None
        desc = dest.name + (" (resumed)" if resumed else "")
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=desc, file=sys.stderr)  # fmt: skip
        with f, bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise SarbError(
                        f"download of {url} interrupted ({exc}); rerun the same command to resume"
                    ) from None
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as exc:
                    raise SarbError(f"{part}: cannot write ({exc.strerror or exc})") from None
                bar.update(len(chunk))
    got = part.stat().st_size
    if total is not None and got != total:
        raise SarbError(
            f"download of {url} stopped at {got} of {total} bytes; rerun the same command to resume"
        )
