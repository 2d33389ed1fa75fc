"""Archives for the extraction tests (tests/data/test_extract.py and the bad-input corpus), written member by member,
links, FIFOs and encrypted flags included: what tarfile and zipfile alone would not let a test build; and the plain
tar.gz or folder of files that the dataset tests build their fake copies in."""

from __future__ import annotations

import io
import tarfile
import zipfile


def write_tar(path, entries):
    """entries: (name, kind, payload): 'file' (bytes), 'sym'/'hard' (the link's target), 'dir', 'fifo'."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            types = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "dir": tarfile.DIRTYPE, "fifo": tarfile.FIFOTYPE}
            info.type, info.linkname = types[kind], payload or ""
            tf.addfile(info)
    return path


def write_tar_files(path, files):
    """A tar.gz of regular files: ``files`` maps member name -> bytes (written in sorted order)."""
    return write_tar(path, [(name, "file", data) for name, data in sorted(files.items())])


def write_files(root, files):
    """The same files extracted under the folder ``root`` (sub-folders made as needed); returns ``root``."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path, entries):
    """entries: (name, payload, kind) with kind 'file', 'sym' (payload: the link's target) or 'encrypted'."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload, kind in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o120777 if kind == "sym" else 0o100644) << 16
            zf.writestr(info, payload)
    for name, _, kind in entries:
        if kind == "encrypted":
            mark_encrypted(path, name)
    return path


def mark_encrypted(path, name):
    """Set the 'encrypted' flag of ``name`` in the central directory (zipfile itself cannot write encrypted zips)."""
    data = bytearray(path.read_bytes())
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        length = int.from_bytes(data[start + 28 : start + 30], "little")
        if data[start + 46 : start + 46 + length] == name.encode():
            data[start + 8] |= 0x1
        start += 4
    path.write_bytes(bytes(data))
