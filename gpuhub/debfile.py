"""Read a Debian package's control fields with the Python standard library (no dpkg needed).

A .deb is an `ar` archive (deb(5)): `debian-binary`, then `control.tar[.gz|.xz|.zst]`, then
`data.tar...`. The control member holds `./control`, deb-control(5) fields: `Name: value` lines,
continued by lines that start with a space. zstd (Ubuntu's dpkg-deb default since 21.10) is in
the standard library only from Python 3.14 (`compression.zstd`): before that such a member cannot
be read here, and `DebError` says so.
"""
from __future__ import annotations

import io
import lzma
import tarfile
from pathlib import Path

AR_MAGIC = b"!<arch>\n"
HEADER = 60  # ar(5): name 16, mtime 12, uid 6, gid 6, mode 8, size 10, "`\n"


class DebError(Exception):
    pass


def _members(data: bytes):
    if not data.startswith(AR_MAGIC):
        raise DebError("not a Debian package (no ar archive header)")
    pos = len(AR_MAGIC)
    while pos + HEADER <= len(data):
        header = data[pos:pos + HEADER]
        if header[58:60] != b"`\n":
            raise DebError("damaged ar archive (bad member header)")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DebError("damaged ar archive (bad member size)") from None
        start = pos + HEADER
        yield name, data[start:start + size]
        pos = start + size + (size % 2)  # members are padded to an even offset


def _decompress(name: str, blob: bytes) -> bytes:
    if name == "control.tar":
        return blob
    if name == "control.tar.gz":
        import gzip
        return gzip.decompress(blob)
    if name == "control.tar.xz":
        return lzma.decompress(blob)
    if name == "control.tar.zst":
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            raise DebError("its control member is zstd-compressed (control.tar.zst), which this Python cannot "
                           "read (zstd is in the standard library from 3.14); repack it with "
                           "`dpkg-deb -R FILE dir && dpkg-deb -Zxz -b dir FILE`") from None
        return zstd.decompress(blob)
    raise DebError(f"unknown control member {name}")


def parse_control(text: str) -> dict:
    """deb-control(5) fields -> {Name: value}; continuation lines joined with newlines."""
    fields, last = {}, None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and last:
            fields[last] += "\n" + line.strip()
        elif ":" in line:
            last, _, value = line.partition(":")
            last = last.strip()
            fields[last] = value.strip()
    return fields


def control(path: Path) -> dict:
    """The control fields of the .deb at `path` (Package, Version, Depends...); DebError if unreadable."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DebError(f"cannot read it: {e.strerror}") from None
    for name, blob in _members(data):
        if name.startswith("control.tar"):
            try:
                with tarfile.open(fileobj=io.BytesIO(_decompress(name, blob))) as archive:
                    member = next((m for m in archive.getmembers() if m.name in ("./control", "control")), None)
                    if member is None:
                        raise DebError(f"{name} holds no control file")
                    return parse_control(archive.extractfile(member).read().decode("utf-8", "replace"))
            except DebError:
                raise
            except Exception as e:  # tarfile, gzip, lzma, zlib, zstd: each has its own errors
                raise DebError(f"its {name} cannot be read: {e}") from None
    raise DebError("not a Debian package (no control member)")
