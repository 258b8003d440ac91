"""The gateway's store of station device keys (docs/topics.md "Signed payloads").

Each station signs its records with a secret device key (firmware/sign.py: HMAC-SHA256,
the station's ``key.bin``, 16 to 64 bytes). The gateway holds the same keys in one JSON
file, station id -> key as lowercase hex::

    {"yb-town-01": "6b6b6b...", "yb-site-07": "..."}

The file is a secret: it must be readable by its owner only (mode 0600, no group or
other permission bit at all). :meth:`KeyStore.load` refuses a file with any group/other
bit with :class:`KeyFilePermissionError` instead of quietly using a leaked key, and
:meth:`KeyStore.add` writes a new file atomically (a temporary file created 0600 in the
same folder, fsync, rename over the old one, fsync of the folder), so a crash leaves
either the old or the new file, never a half-written one or one with wider permissions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import threading
from pathlib import Path

STATION_ID = re.compile(r"[a-z0-9_-]{1,32}")
"""A station id (firmware/config.py: a-z 0-9 - _, at most 32 characters)."""

KEY_MIN_BYTES = 16  # firmware/config.py KEY_MIN_BYTES
KEY_MAX_BYTES = 64  # firmware/config.py KEY_MAX_BYTES
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


class KeyStoreError(Exception):
    """Base of the key store's errors; ``path`` is the key file."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class KeyFilePermissionError(KeyStoreError):
    """The key file is accessible to its group or to others; ``mode`` has its bits."""

    def __init__(self, path: Path, mode: int) -> None:
        self.mode = mode
        super().__init__(
            path,
            f"mode {mode:04o} lets group/others access the device keys; "
            f"it must be 0600 (chmod 600 {path})",
        )


class KeyFileFormatError(KeyStoreError):
    """The key file is not a JSON object of station id -> hex key; ``station`` is the
    entry at fault (None when the whole file is)."""

    def __init__(self, path: Path, message: str, station: str | None = None) -> None:
        self.station = station
        super().__init__(path, message)


class InvalidKeyError(ValueError):
    """A station id or key given to :meth:`KeyStore.add` is not acceptable."""


def check_station_id(station: str) -> None:
    if not isinstance(station, str) or not STATION_ID.fullmatch(station):
        raise InvalidKeyError(f"station id {station!r}: use 1-32 of a-z, 0-9, '-' and '_'")


def check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray):
        raise InvalidKeyError(f"a device key is bytes, not {type(key).__name__}")
    if not KEY_MIN_BYTES <= len(key) <= KEY_MAX_BYTES:
        raise InvalidKeyError(
            f"a device key has {KEY_MIN_BYTES}..{KEY_MAX_BYTES} bytes, not {len(key)}"
        )


class KeyStore:
    """Station device keys, loaded from (and saved to) one 0600 JSON file.

    Thread-safe: ``get`` may be called from any thread while ``add`` rewrites the file.
    """

    def __init__(self, path: str | os.PathLike[str], keys: dict[str, bytes] | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        for station, key in (keys or {}).items():
            check_station_id(station)
            check_key(key)
            self._keys[station] = bytes(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, missing_ok: bool = False) -> KeyStore:
        """The keys in ``path``. A missing file is ``FileNotFoundError`` unless
        ``missing_ok`` (then the store is empty and ``add`` creates the file)."""
        p = Path(path)
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            if missing_ok:
                return cls(p)
            raise
        except OSError as e:
            raise KeyStoreError(p, f"cannot open: {e.strerror}") from e
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())  # the file we read, not a name that may be swapped
            if not stat.S_ISREG(st.st_mode):
                raise KeyStoreError(p, "is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise KeyFilePermissionError(p, mode)
            raw = f.read()
        return cls(p, _parse(p, raw))

    def get(self, station: str) -> bytes | None:
        """The device key of ``station``; None when the station is not known."""
        with self._lock:
            return self._keys.get(station)

    def stations(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    def __contains__(self, station: object) -> bool:
        with self._lock:
            return station in self._keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def add(self, station: str, key: bytes) -> None:
        """Add or replace ``station``'s key and rewrite the file atomically, mode 0600."""
        check_station_id(station)
        check_key(key)
        with self._lock:
            keys = dict(self._keys)
            keys[station] = bytes(key)
            write_private(self.path, _dump(keys))
            self._keys = keys

    def __repr__(self) -> str:  # never the keys themselves
        return f"KeyStore({str(self.path)!r}, {len(self)} stations)"


def _parse(path: Path, raw: bytes) -> dict[str, bytes]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise KeyFileFormatError(path, f"not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise KeyFileFormatError(path, "must be a JSON object of station id -> hex key")
    keys: dict[str, bytes] = {}
    for station, hexkey in doc.items():
        if not STATION_ID.fullmatch(station):
            raise KeyFileFormatError(path, f"station id {station!r} is not valid", station)
        if not isinstance(hexkey, str) or not _HEX.fullmatch(hexkey):
            raise KeyFileFormatError(
                path, f"key of {station!r} is not lowercase hex of whole bytes", station
            )
        key = bytes.fromhex(hexkey)
        if not KEY_MIN_BYTES <= len(key) <= KEY_MAX_BYTES:
            raise KeyFileFormatError(
                path,
                f"key of {station!r} has {len(key)} bytes, {KEY_MIN_BYTES}..{KEY_MAX_BYTES} needed",
                station,
            )
        keys[station] = key
    return keys


def _dump(keys: dict[str, bytes]) -> bytes:
    doc = {station: keys[station].hex() for station in sorted(keys)}
    return (json.dumps(doc, indent=1) + "\n").encode()


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically with mode 0600 whatever the umask: a temp file in the same
    folder, fsync, rename, fsync the folder. Used for every secret file (key store,
    device keys)."""
    folder = path.parent
    tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
