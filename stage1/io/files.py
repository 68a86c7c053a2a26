"""Opening input files safely, and reading them line by line.

An input must be a regular file: a FIFO named ``*.jsonl`` would block a read forever and a device
never ends, so both are refused before a byte is read. JSON Lines are read and decoded one line
at a time, so memory does not grow with the file.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from stage1.core.errors import InputError

UTF8_BOM = b"\xef\xbb\xbf"
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


@contextmanager
def open_input(path: str | Path) -> Iterator[BinaryIO]:
    """``path`` opened for binary reading, which must be a regular file.

    Opened non-blocking and checked with ``fstat`` before a byte is read, so a FIFO named
    ``*.jsonl`` is refused instead of blocking forever, and the check cannot race the open.

    Raises:
        InputError: missing, a symlink loop, a folder, a FIFO/device/socket, or unreadable.
    """
    source = Path(path)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise _open_error(source, error) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InputError("is a folder, expected a file", path=source)
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
            raise InputError(f"is {kind}, not a regular file", path=source, hint="give a regular file; copy a stream to a file first")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            yield handle
    finally:
        os.close(fd)


def read_input_bytes(path: str | Path) -> bytes:
    """The bytes of ``path``, which must be a regular file (see ``open_input``)."""
    with open_input(path) as handle:
        return handle.read()


def _open_error(source: Path, error: OSError) -> InputError:
    if error.errno == errno.ELOOP:
        return InputError("is a symlink loop (too many levels of symbolic links)", path=source, hint="point the link at a real file")
    if error.errno == errno.ENOENT:
        if source.is_symlink():
            return InputError(f"is a symlink to a missing file ({os.readlink(source)})", path=source, hint="check the link")
        return InputError("file not found", path=source, hint="check the path")
    if error.errno == errno.EISDIR:
        return InputError("is a folder, expected a file", path=source)
    return InputError(f"cannot read: {error.strerror}", path=source, hint="check the file's permissions")


def utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line, read and decoded one at a time: memory does not grow
    with the file. The same refusals as ``_read_utf8`` (a BOM, invalid UTF-8 with its byte offset
    in the file and its line), raised when the reader reaches them."""
    offset = 0
    with open_input(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(UTF8_BOM):
                raise InputError("the file starts with a UTF-8 byte-order mark", path=path, line=1, hint="save it as UTF-8 without BOM")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InputError(f"invalid UTF-8 (byte 0x{raw[error.start]:02x} at offset {offset + error.start})", path=path,
                                 line=number, hint="re-encode the file as UTF-8") from None
            offset += len(raw)
            yield number, line.removesuffix("\n")
