"""Atomic replacement of small files (station config, keys) with a ``.bak`` fallback.

``write_atomic(path, data)`` never overwrites ``path`` in place. It writes ``path.tmp``,
makes it durable, moves the current ``path`` aside to ``path.bak`` and renames the
temporary file onto ``path``::

    1. write path.tmp, flush (+ fsync where the interpreter has one), close
    2. rename path -> path.bak          (only if path exists)
    3. rename path.tmp -> path

``read_with_fallback(path, validate)`` tries ``path`` and then ``path.bak``. Whatever
instant the power fails at, one of them holds a complete copy, old or new:

- during 1: ``path`` is untouched (a torn ``path.tmp`` is never read);
- between 2 and 3: ``path`` is missing, ``path.bak`` is the old copy (and ``path.tmp``
  the complete new one, picked up by nobody: the next write replaces it);
- after 3: ``path`` is the new copy, ``path.bak`` the old one.

Why renames are trusted, per filesystem:

- **LittleFS** (MicroPython's default on ESP32 and RP2040, ``VfsLfs2``): a rename is one
  metadata commit in the directory's metadata pair, and a commit is atomic (CRC-checked
  log entry: after a power cut it is either replayed whole or ignored). Renaming onto an
  existing name replaces it in the same commit. File data is copy-on-write and only
  becomes visible at ``flush()``/``close()`` (``lfs_file_sync``), so a torn data write
  can never show in a file that was already synced.
- **FAT** (``VfsFat``, SD cards, some ESP32 builds): FatFs ``f_rename`` writes the new
  directory entry, then marks the old one deleted; a power cut between the two leaves two
  names for one cluster chain, and MicroPython's rename over an existing name first
  deletes the target. Neither step is atomic, but each intermediate state still leaves one
  of ``path``/``path.bak`` complete, which is all ``read_with_fallback`` needs. Run
  ``fsck`` on such cards when they come back from the field.
- **Host POSIX** (the unix port, CPython): ``rename(2)`` is atomic. Durability needs the
  file data fsynced before the rename (MicroPython's unix ``flush()`` calls ``fsync``;
  on CPython we call ``os.fsync``) and the directory fsynced after it, which we do where
  ``os.open`` exists (CPython only). A SIGKILLed process loses nothing the kernel
  already has; only a host power cut tests the fsyncs.

Every file operation goes through a small filesystem layer (``DEFAULT_FS``, or an object
with the same methods passed as ``fs=``), so tests can tear writes (hil_tests/tornfs.py).
"""

import os

_FSYNC = getattr(os, "fsync", None)  # CPython: yes; MicroPython: no (flush() syncs)
_OS_OPEN = getattr(os, "open", None)  # CPython only; used to fsync a directory

SOURCE_PRIMARY = "primary"
SOURCE_BACKUP = "backup"

_ENOENT = 2  # errno.ENOENT; MicroPython builds may lack the errno module


class NoValidCopy(Exception):
    """Neither ``path`` nor ``path.bak`` holds a copy that passes ``validate``.

    ``path`` is the file asked for; ``reasons`` holds one string per copy tried, saying
    why it was rejected (missing, unreadable, or the validator's message).
    """

    def __init__(self, path, reasons):
        super().__init__("no valid copy of %s: %s" % (path, "; ".join(reasons)))
        self.path = path
        self.reasons = reasons


class DefaultFs:
    """The real filesystem through ``open`` and ``os``; the shape an injected ``fs`` has.

    ``sync(f)`` makes what was written through ``f`` durable: ``flush()`` is already a
    sync on MicroPython (LittleFS ``lfs_file_sync``, FatFs ``f_sync``, unix ``fsync``);
    CPython additionally needs ``os.fsync``.
    """

    def open(self, path, mode):
        return open(path, mode)

    def rename(self, old, new):
        os.rename(old, new)

    def remove(self, path):
        os.remove(path)

    def stat(self, path):
        return os.stat(path)

    def mkdir(self, path):
        os.mkdir(path)

    def sync(self, f):
        f.flush()
        if _FSYNC is not None:
            _FSYNC(f.fileno())

    def sync_dir(self, path):
        """Best effort: fsync a directory so a rename in it survives a host power cut."""
        if _OS_OPEN is None or _FSYNC is None:
            return
        try:
            fd = _OS_OPEN(path or ".", 0)  # O_RDONLY
        except OSError:
            return
        try:
            _FSYNC(fd)
        except OSError:
            pass
        finally:
            os.close(fd)  # type: ignore[attr-defined]


DEFAULT_FS = DefaultFs()


def _dirname(path):
    i = path.rfind("/")
    if i < 0:
        return "."
    return path[:i] or "/"


def exists(path, fs=None):
    """True when ``path`` can be stat'ed (file or directory)."""
    if fs is None:
        fs = DEFAULT_FS
    try:
        fs.stat(path)
        return True
    except OSError:
        return False


def write_atomic(path, data, fs=None):
    """Replace ``path`` with ``data`` (bytes) so that a power cut at any point leaves
    either the old or the new copy readable through ``read_with_fallback``.

    The previous ``path`` is kept as ``path.bak``.
    """
    if fs is None:
        fs = DEFAULT_FS
    tmp = path + ".tmp"
    bak = path + ".bak"
    f = fs.open(tmp, "wb")
    try:
        f.write(data)
        fs.sync(f)
    finally:
        f.close()
    if exists(path, fs):
        _rename_over(fs, path, bak)
    _rename_over(fs, tmp, path)
    fs.sync_dir(_dirname(path))


def _rename_over(fs, old, new):
    # POSIX, LittleFS and MicroPython's VfsFat all replace an existing target; this
    # fallback is for a filesystem layer that refuses to.
    try:
        fs.rename(old, new)
    except OSError:
        if not exists(new, fs):
            raise
        fs.remove(new)
        fs.rename(old, new)


def _read_all(fs, path):
    f = fs.open(path, "rb")
    try:
        return f.read()
    finally:
        f.close()


def read_with_fallback(path, validate, fs=None):
    """Load ``path``, else ``path.bak``: returns ``(value, source)``.

    ``validate(raw_bytes)`` returns the loaded value (for instance the parsed JSON) or
    raises ``ValueError`` when the content is unusable (JSON and UTF-8 errors already are
    ``ValueError``s). ``source`` is ``SOURCE_PRIMARY`` or ``SOURCE_BACKUP``; a caller that
    got the backup should log it and may rewrite the primary. Raises ``NoValidCopy`` when
    neither copy is usable.
    """
    if fs is None:
        fs = DEFAULT_FS
    reasons = []
    for name, source in ((path, SOURCE_PRIMARY), (path + ".bak", SOURCE_BACKUP)):
        try:
            raw = _read_all(fs, name)
        except OSError as e:
            if e.args and e.args[0] == _ENOENT:
                reasons.append("%s missing" % name)
            else:
                reasons.append("%s unreadable (%r)" % (name, e))
            continue
        try:
            return validate(raw), source
        except ValueError as e:
            reasons.append("%s invalid (%s)" % (name, e))
    raise NoValidCopy(path, reasons)
