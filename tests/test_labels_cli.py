"""`sarb labels` (complete label matrices as CSV) and `sarb data download` (fetch, resume,
verify, extract; the offline error), against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sarb.cli import main
from sarb.data import download
from sarb.data.csvio import read_matrix
from sarb.data.download import Archive
from tests.test_coco import EXPECTED, IMAGES, write_instances, write_jpegs
from tests.test_voc import make_voc


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# sarb labels
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def coco_args(tmp_path: Path) -> list[str]:
    ann = write_instances(tmp_path / "instances.json")
    write_jpegs(tmp_path / "img", [f for _, f in IMAGES])
    return ["--dataset", "coco", "--annotations", str(ann), "--images", str(tmp_path / "img"),
            "--test-annotations", str(ann), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip


def test_labels_headerless_ints_in_reader_order(coco_args, tmp_path, capsys):
    out, names = tmp_path / "labels.csv", tmp_path / "names.txt"
    code, err = _run(["labels", *coco_args, "--split", "train", "--out", str(out),
                      "--names", str(names)], capsys)  # fmt: skip
    assert code == 0 and f"{out}: 4 x 3 labels of coco train" in err
    lines = out.read_text().splitlines()
    assert lines == [",".join(str(v) for v in row) for row in EXPECTED.tolist()]
    assert names.read_text() == "cat\ndog\nzebra\n"
    # Exactly what `sarb masks` reads.
    masked = tmp_path / "partial.csv"
    code, _ = _run(["masks", "--labels", str(out), "--known", "0.5", "--out", str(masked)], capsys)
    assert code == 0
    partial = read_matrix(masked, allowed={1, -1, 0}, integer=True)
    assert partial.shape == EXPECTED.shape
    assert np.all((partial == 0) | (partial == EXPECTED))


def test_labels_config_file_and_val_split(coco_args, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: coco\nepochs: 3\n")  # a training config works as well
    args = [a for a in coco_args if a not in ("--dataset", "coco")]
    code, _ = _run(["labels", "--config", str(config), *args, "--out", str(tmp_path / "a.csv")],
                   capsys)  # fmt: skip
    assert code == 0 and len((tmp_path / "a.csv").read_text().splitlines()) == 4
    code, err = _run(["labels", *coco_args, "--split", "val", "--out", str(tmp_path / "v.csv")],
                     capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "no val split" in err


def test_labels_unknown_dataset(tmp_path, capsys):
    code, err = _run(["labels", "--dataset", "imagenet", "--out", str(tmp_path / "x.csv")], capsys)
    assert code == 2 and "'imagenet'" in err and "coco2014" in err and "voc2007" in err


# --------------------------------------------------------------------------------------------
# sarb data download
# --------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    cut_next: bool  # send only half of the next response, then close
    ranges: list[str | None]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        data = self.server.files.get(self.path)
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)
        if data is None:
            self.send_error(404)
            return
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        if start >= len(data) and rng:
            self.send_response(416)
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.cut_next:
            self.server.cut_next = False
            body = body[: len(body) // 2]
        self.wfile.write(body)
        self.close_connection = True


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.cut_next, srv.ranges = {}, False, []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_of(folder: Path, arcname: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(folder, arcname=arcname)
    return buf.getvalue()


def test_resume_verify_extract(server, tmp_path, monkeypatch, capsys):
    payload = _zip_bytes({f"annotations/f{i}.txt": bytes([i]) * 50_000 for i in range(20)})
    server.files["/a.zip"] = payload
    archive = Archive("a.zip", (_url(server, "/a.zip"),), hashlib.md5(payload).hexdigest())
    monkeypatch.setitem(download.ARCHIVES, "coco2014", (archive,))
    root = tmp_path / "coco"
    server.cut_next = True
    code, err = _run(["data", "download", "coco2014", "--root", str(root)], capsys)
    assert code == 2 and "rerun the same command to resume" in err.strip().splitlines()[-1]
    part = root / "a.zip.part"
    assert 0 < part.stat().st_size < len(payload)

    code, err = _run(["data", "download", "coco2014", "--root", str(root)], capsys)
    assert code == 0, err
    assert server.ranges == [None, f"bytes={len(payload) // 2}-"]  # the second one resumed
    assert (root / "a.zip").read_bytes() == payload and not part.exists()
    assert (root / "annotations" / "f3.txt").read_bytes() == bytes([3]) * 50_000
    assert (root / ".a.zip.extracted").exists()
    assert f"next: sarb train --dataset coco2014 --root {root}" in err

    code, _ = _run(["data", "download", "coco2014", "--root", str(root)], capsys)  # a no-op
    assert code == 0 and len(server.ranges) == 2


def test_md5_mismatch_deletes_the_download(server, tmp_path, monkeypatch, capsys):
    server.files["/a.zip"] = _zip_bytes({"x.txt": b"x"})
    archive = Archive("a.zip", (_url(server, "/a.zip"),), "0" * 32)
    monkeypatch.setitem(download.ARCHIVES, "coco2014", (archive,))
    code, err = _run(["data", "download", "coco2014", "--root", str(tmp_path)], capsys)
    last = err.strip().splitlines()[-1]  # after the progress bar
    assert code == 2 and last.startswith("sarb: error:") and "MD5" in last and "a.zip.part" in last
    assert not (tmp_path / "a.zip.part").exists() and not (tmp_path / "a.zip").exists()
    code, err = _run(["data", "download", "coco2014", "--root", str(tmp_path), "--no-verify"],
                     capsys)  # fmt: skip
    assert code == 0 and (tmp_path / "x.txt").read_bytes() == b"x"


def test_voc_tar_end_to_end(server, tmp_path, monkeypatch, capsys):
    voc = make_voc(tmp_path / "src")
    server.files["/trainval.tar"] = _tar_of(voc.parent, "VOCdevkit")
    archive = Archive("trainval.tar", (_url(server, "/missing.tar"), _url(server, "/trainval.tar")))
    monkeypatch.setitem(download.ARCHIVES, "voc2007", (archive,))  # the first mirror is a 404
    root = tmp_path / "voc"
    code, err = _run(["data", "download", "voc2007", "--root", str(root), "--delete-archives"],
                     capsys)  # fmt: skip
    assert code == 0, err
    assert not (root / "trainval.tar").exists()
    out = tmp_path / "test.csv"
    code, _ = _run(["labels", "--dataset", "voc2007", "--root", str(root), "--split", "test",
                    "--out", str(out)], capsys)  # fmt: skip
    assert code == 0 and len(out.read_text().splitlines()) == 2


def test_file_url_and_hand_placed_archive(tmp_path, monkeypatch, capsys):
    source = tmp_path / "src.zip"
    source.write_bytes(_zip_bytes({"objects.json": b"[]"}))
    archive = Archive("objects.json.zip", (source.as_uri(),))
    monkeypatch.setitem(download.ARCHIVES, "vg", (archive,))
    root = tmp_path / "vg"
    code, err = _run(["data", "download", "vg", "--root", str(root)], capsys)
    assert code == 0 and (root / "objects.json").read_bytes() == b"[]"
    assert "sarb data build-vg200" in err

    # Without network, an archive already in the folder is verified and extracted.
    root2 = tmp_path / "vg2"
    root2.mkdir()
    (root2 / "objects.json.zip").write_bytes(source.read_bytes())
    offline = Archive("objects.json.zip", ("http://nonexistent.invalid/objects.json.zip",))
    monkeypatch.setitem(download.ARCHIVES, "vg", (offline,))
    code, err = _run(["data", "download", "vg", "--root", str(root2)], capsys)
    assert code == 0 and (root2 / "objects.json").exists()


def test_offline_error_is_one_line(tmp_path, monkeypatch, capsys):
    urls = ("http://nonexistent.invalid/x.zip", "http://nonexistent.invalid/y.zip")
    archives = tuple(Archive(Path(u).name, (u,)) for u in urls)
    monkeypatch.setitem(download.ARCHIVES, "coco2014", archives)
    root = tmp_path / "coco"
    start = time.perf_counter()
    code, err = _run(["data", "download", "coco2014", "--root", str(root)], capsys)
    assert time.perf_counter() - start < 20
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("sarb: error: cannot download")
    assert all(u in lines[0] for u in urls) and f"into {root}/" in lines[0]


def test_corrupt_archive(tmp_path, monkeypatch, capsys):
    (tmp_path / "a.zip").write_bytes(b"this is not an archive")
    monkeypatch.setitem(download.ARCHIVES, "coco2014", (Archive("a.zip", ("http://x.invalid/",)),))
    code, err = _run(["data", "download", "coco2014", "--root", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "not a zip or tar archive" in err


def test_known_checksums_are_well_formed():
    for archives in download.ARCHIVES.values():
        for a in archives:
            assert a.md5 is None or (len(a.md5) == 32 and int(a.md5, 16) >= 0)
            assert all(u.startswith(("http://", "https://")) for u in a.urls)


def test_hand_placed_archive_with_a_wrong_md5(tmp_path, monkeypatch, capsys):
    (tmp_path / "a.zip").write_bytes(_zip_bytes({"x.txt": b"x"}))
    archive = Archive("a.zip", ("http://x.invalid/a.zip",), "0" * 32)
    monkeypatch.setitem(download.ARCHIVES, "coco2014", (archive,))
    code, err = _run(["data", "download", "coco2014", "--root", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "MD5" in err and "--no-verify" in err
    assert (tmp_path / "a.zip").exists()  # the user's file is not deleted
