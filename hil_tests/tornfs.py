"""A filesystem layer that loses power in the middle of a write (MicroPython and CPython).

A process killed on a host keeps whatever the kernel's page cache holds: every write(2)
that returned is complete. A board losing power does not: the write being programmed
when the supply collapses reaches flash only partly. ``TornFs`` reproduces that. It
wraps a filesystem layer (``firmware.atomic.DEFAULT_FS`` unless given) and counts the
operations that change the disk (``write``, ``rename``, ``remove``). At operation number
``tear_at_op`` (1-based) the power fails:

- a ``write`` of n bytes lets only its first ``cut`` bytes reach the file (0 <= cut < n;
  chosen by a seeded PRNG unless given), syncs them, and raises ``PowerLoss``;
- a ``rename`` or ``remove`` does not happen at all, and raises ``PowerLoss``.

``PowerLoss`` derives from ``BaseException`` so that firmware code catching
``Exception``/``OSError`` does not swallow it; the test script catches it at top level,
prints ``fs.report()`` and exits, which is as close to a dead board as a process gets.

Pass an instance as ``fs=`` to ``firmware.store.Ring`` or ``firmware.atomic``; it is
written in the MicroPython subset so that the real interpreter can import it.
"""

from firmware.atomic import DEFAULT_FS


class PowerLoss(BaseException):
    """The simulated supply failed; nothing after this reached flash."""


class _Xorshift32:
    """Tiny seeded PRNG, the same sequence on MicroPython and CPython."""

    def __init__(self, seed):
        self.state = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def below(self, n):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x % n if n > 0 else 0


class TornFile:
    """A file opened through ``TornFs``: reads pass through, writes are counted."""

    def __init__(self, fs, f, path):
        self._fs = fs
        self._f = f
        self.path = path

    def write(self, data):
        return self._fs._write(self, data)

    def read(self, *args):
        return self._f.read(*args)

    def readinto(self, buf):
        return self._f.readinto(buf)

    def seek(self, *args):
        return self._f.seek(*args)

    def tell(self):
        return self._f.tell()

    def flush(self):
        self._f.flush()

    def fileno(self):
        return self._f.fileno()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TornFs:
    """Filesystem layer that fails power at mutating operation ``tear_at_op``.

    ``tear_at_op=0`` never tears (it only counts, so a test can size its runs).
    ``cut`` fixes how many bytes of the torn write land (clamped to n - 1); otherwise
    ``seed`` drives the choice. After the tear, ``torn`` is a tuple
    ``(op, path, n, cut)`` (``n``/``cut`` are 0 for rename and remove).
    """

    def __init__(self, tear_at_op, seed=1, cut=None, base=None):
        self.tear_at_op = tear_at_op
        self.ops = 0
        self.torn = None
        self._cut = cut
        self._rng = _Xorshift32(seed)
        self._base = base if base is not None else DEFAULT_FS

    def report(self):
        if self.torn is None:
            return f"TORN none ops={self.ops}"
        op, path, n, cut = self.torn
        return f"TORN {op} {path} n={n} cut={cut} ops={self.ops}"

    def _next_op_tears(self):
        self.ops += 1
        return self.tear_at_op and self.ops == self.tear_at_op

    def _write(self, tf, data):
        if not self._next_op_tears():
            return tf._f.write(data)
        n = len(data)
        cut = self._rng.below(n) if self._cut is None else max(0, min(self._cut, n - 1))
        if cut:
            tf._f.write(memoryview(data)[0:cut])
        self._base.sync(tf._f)
        self.torn = ("write", tf.path, n, cut)
        raise PowerLoss(self.report())

    # -- the filesystem-layer interface (see firmware.atomic.DefaultFs)

    def open(self, path, mode):
        return TornFile(self, self._base.open(path, mode), path)

    def rename(self, old, new):
        if self._next_op_tears():
            self.torn = ("rename", old, 0, 0)
            raise PowerLoss(self.report())
        self._base.rename(old, new)

    def remove(self, path):
        if self._next_op_tears():
            self.torn = ("remove", path, 0, 0)
            raise PowerLoss(self.report())
        self._base.remove(path)

    def stat(self, path):
        return self._base.stat(path)

    def mkdir(self, path):
        self._base.mkdir(path)

    def sync(self, f):
        self._base.sync(f._f if isinstance(f, TornFile) else f)

    def sync_dir(self, path):
        self._base.sync_dir(path)
