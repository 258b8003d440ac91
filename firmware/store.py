"""Store-and-forward: a bounded ring of fixed-size, CRC-checked records on flash.

Minute records are appended here before they are published, and leave only when the
broker has acknowledged them (MQTT PUBACK). Measuring never stops: when the ring is full
the oldest unsent record is overwritten and counted in ``dropped``.

On-flash layout (all integers little-endian)
--------------------------------------------
``<dir>/seg0.bin`` .. ``seg<N-1>.bin``: segment files, created full size (zeros) once and
then only overwritten in place, never appended to or truncated, so the filesystem never
has to allocate while the station runs. Slot ``i`` lives in segment
``i // slots_per_segment`` at offset ``(i % slots_per_segment) * slot_size``::

    offset size field
    0      2    magic    0x4C52 ("RL")
    2      2    length   payload bytes (<= slot_size - 12)
    4      4    seq      per-station sequence number, 1.., strictly increasing
    8      4    crc      CRC-32 (IEEE 802.3, as zlib) of bytes 0..7 then the payload
    12     n    payload

Slots are written in order; the slot after the one holding the highest valid ``seq`` is
the write head. An all-zero header is a never-written slot; any other header that fails
the checks (magic, length, CRC) is a damaged slot, for instance a write torn by a power
cut. A damaged slot is never returned by ``peek()``: it is skipped and counted in
``corrupt_skipped``.

``<dir>/cursor.bin``: the read cursor, as two 32-byte copies (A at 0, B at 32)::

    0  2  magic 0x4C43 ("CL")     2  2  version (1)
    4  4  generation              8  4  acked_seq: every seq <= it has been acknowledged
    12 4  seq_floor: highest seq handed out when this copy was written
    16 4  CRC-32 of bytes 0..15   20 12 zero

Each save writes the copy the current one is not (generation + 1, alternating A/B) in
place; on open the valid copy with the higher generation wins. A save torn by a power
cut damages only the copy being written, so the previous generation survives: the worst
case is a stale cursor, which re-sends records the broker already has (at-least-once;
the gateway de-duplicates on (station, seq)). This was chosen over
``firmware.atomic.write_atomic`` because it wears flash least: one small in-place write
and one sync per save, against a new file plus two renames (LittleFS: three metadata
commits; FAT: directory entries, FAT sectors and a data cluster), and on FAT a rename is
not even atomic. ``cursor_every`` saves the cursor every n-th ack to trade duplicates
after a reboot for fewer writes.

Recovery on open
----------------
All slots are scanned. ``next_seq = 1 + max(highest valid seq, seq_floor, acked_seq)``,
so a sequence number that reached flash or the cursor is never issued again, even when
the cursor file is stale or lost. The oldest waiting record is the valid one with the
lowest ``seq > acked_seq``. At most the record being written when the power failed is
lost (a torn slot fails its CRC), and only if ``append`` had not returned yet.

Durability per filesystem
-------------------------
After each slot write the file is synced (``fs.sync``: ``flush()`` is ``lfs_file_sync`` on
LittleFS, ``f_sync`` on FAT and ``fsync`` on the unix port; CPython adds ``os.fsync``).

- LittleFS (ESP32, RP2040): data is copy-on-write and a sync is one atomic commit, so a
  slot is either the old or the new content, never torn. But littlefs stores a file as a
  backwards-linked CTZ skip-list: writing in the middle of a file rewrites every block
  from there to the end of the file. Keep a segment to one erase block (4096 bytes on
  ESP32 and RP2040: ``slots_per_segment = 4096 // slot_size``) and use more segments to
  bound that write amplification.
- FAT: slots are overwritten in place, a power cut can tear a sector; the CRC catches it.
- Host POSIX (unix port): a SIGKILL loses nothing the kernel has; hil_tests/tornfs.py
  simulates the torn prefix a board would leave.

CRC-32: ``binascii.crc32`` where the port has it (CPython; MicroPython's unix port, and
ESP32 and RP2040 since their builds are at ``MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES``,
where ``py/mpconfig.h`` enables ``MICROPY_PY_BINASCII_CRC32``). A table-driven fallback,
``crc32_table``, gives the same result where a build left it out. Check value:
CRC-32(b"123456789") = 0xCBF43926.

Allocation: one slot buffer for writing, one for reading and one cursor buffer, made at
open; ``append``/``peek`` fill them with ``struct.pack_into`` and ``readinto``. What remains
per call is a memoryview object for the payload slice and the header tuple.

RAM: at most two segment files and the cursor file are open at a time (each handle
holds the filesystem's file buffer).
"""

import struct
from array import array

from drivers._compat import const
from firmware.atomic import DEFAULT_FS

try:
    import binascii

    _binascii_crc32 = getattr(binascii, "crc32", None)
except ImportError:  # a build without binascii
    _binascii_crc32 = None

_SLOT_MAGIC = const(0x4C52)  # "RL" little-endian: a ring slot
_CURSOR_MAGIC = const(0x4C43)  # "CL" little-endian: a cursor copy
_CURSOR_VERSION = const(1)
_HDR_SIZE = const(12)  # magic u16, length u16, seq u32, crc u32
_HDR_FMT = "<HHII"
_HDR_CRC_AT = const(8)  # the CRC covers bytes 0..7, then the payload
_CURSOR_COPY = const(32)  # one copy of the cursor; the file holds two
_CURSOR_BODY = const(16)  # bytes covered by the cursor CRC
_CURSOR_FMT = "<HHIIII"  # magic, version, generation, acked_seq, seq_floor, crc
_MAX_SEQ = 0xFFFFFFFF  # u32 on flash: 8000 years of minute records

_DAMAGED = const(-1)  # _read_slot: header or CRC check failed
_BLANK = const(0)  # _read_slot: never-written (all-zero header)


# ---------------------------------------------------------------------------- CRC-32

_CRC_TABLE = None


def _build_crc_table():
    table = array("I", [0] * 256)
    for i in range(256):
        c = i
        for _ in range(8):
            if c & 1:
                c = (c >> 1) ^ 0xEDB88320  # reflected 0x04C11DB7, IEEE 802.3
            else:
                c >>= 1
        table[i] = c
    return table


def crc32_table(data, crc=0):
    """CRC-32 (IEEE 802.3, reflected, init and final XOR 0xFFFFFFFF), table driven.

    Same contract as ``binascii.crc32``: pass the previous result as ``crc`` to continue
    over several buffers. Slow on MicroPython (values above 2**30 are long ints there):
    only the fallback for builds without ``binascii.crc32``.
    """
    global _CRC_TABLE
    table = _CRC_TABLE
    if table is None:
        table = _CRC_TABLE = _build_crc_table()
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


crc32 = _binascii_crc32 if _binascii_crc32 is not None else crc32_table


# ---------------------------------------------------------------------------- errors


class RecordTooLarge(ValueError):
    """A payload does not fit in one slot (``size`` > ``limit`` = slot_size - 12)."""

    def __init__(self, size, limit):
        super().__init__("record of %d bytes exceeds the slot payload limit %d" % (size, limit))
        self.size = size
        self.limit = limit


class RingGeometryError(ValueError):
    """The geometry asked for does not fit the segment files already on flash (or is
    impossible). Changing the geometry of a deployed ring means erasing it first."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


# ---------------------------------------------------------------------------- the ring


class Ring:
    """A bounded store-and-forward ring on flash; see the module docstring for layout.

    Use::

        ring = Ring("/data/ring")
        seq = ring.next_seq            # put it in the record body, then:
        ring.append(body)              # returns that seq
        rec = ring.peek()              # (seq, payload view) or None
        if rec and publish(rec[1]):    # after PUBACK:
            ring.ack(rec[0])

    Counters (since this open): ``appended``, ``sent`` (acknowledged), ``dropped``
    (overwritten unsent because the ring was full), ``corrupt_skipped`` (damaged slots
    skipped, in the waiting window or found by the scan at open), ``fill`` (records
    waiting) and ``capacity`` (slots).
    """

    def __init__(
        self,
        directory,
        slot_size=512,
        slots_per_segment=64,
        segments=8,
        fs=None,
        cursor_every=1,
    ):
        if slot_size <= _HDR_SIZE or slot_size > 0xFFFF + _HDR_SIZE:
            raise RingGeometryError("slot_size %d out of range" % slot_size)
        if slots_per_segment < 1 or segments < 1 or cursor_every < 1:
            raise RingGeometryError("slots_per_segment, segments, cursor_every must be >= 1")
        self._dir = directory
        self._fs = fs if fs is not None else DEFAULT_FS
        self.slot_size = slot_size
        self._per_seg = slots_per_segment
        self._segments = segments
        self.capacity = slots_per_segment * segments
        self.max_payload = slot_size - _HDR_SIZE
        self._cursor_every = cursor_every

        # Buffers made once. peek() returns views into _rbuf.
        self._wbuf = bytearray(slot_size)
        self._wmv = memoryview(self._wbuf)
        self._whdr = self._wmv[0:_HDR_CRC_AT]
        self._rbuf = bytearray(slot_size)
        self._rmv = memoryview(self._rbuf)
        self._rhdr = self._rmv[0:_HDR_CRC_AT]
        self._rlen = 0
        self._cbuf = bytearray(2 * _CURSOR_COPY)
        self._cmv = memoryview(self._cbuf)

        self.appended = 0
        self.sent = 0
        self.dropped = 0
        self.corrupt_skipped = 0
        self.fill = 0
        self.next_seq = 1

        self._head = 0  # slot the next append writes
        self._tail = 0  # slot of the oldest waiting record (when fill > 0)
        self._acked = 0  # every seq <= it has been acknowledged
        self._floor = 0  # persisted: highest seq handed out at the last cursor save
        self._gen = 0  # generation of the last cursor copy written or loaded
        self._unsaved = 0  # acks since the cursor was last saved
        self._peeked_seq = 0  # seq returned by the last peek(), 0 if none/invalidated

        # Two-entry cache of open segment files (the write head's and the read tail's).
        self._files = [None, None]  # type: list
        self._file_seg = [-1, -1]
        self._victim = 0
        self._cf = None

        self._open()

    # ------------------------------------------------------------------ public API

    def append(self, payload):
        """Write ``payload`` (bytes-like, <= ``max_payload``) as the next record; return
        its sequence number (``next_seq`` before the call). When the ring is full the
        oldest waiting record is overwritten and counted in ``dropped``. Returns only
        after the slot is synced to flash."""
        n = len(payload)
        if n > self.max_payload:
            raise RecordTooLarge(n, self.max_payload)
        seq = self.next_seq
        if seq > _MAX_SEQ:
            raise OverflowError("sequence numbers exhausted")
        buf = self._wbuf
        struct.pack_into("<HHI", buf, 0, _SLOT_MAGIC, n, seq)
        body = self._wmv[_HDR_SIZE : _HDR_SIZE + n]
        body[:] = payload
        struct.pack_into("<I", buf, _HDR_CRC_AT, crc32(body, crc32(self._whdr)) & 0xFFFFFFFF)
        head = self._head
        f = self._file(head // self._per_seg)
        f.seek((head % self._per_seg) * self.slot_size)
        f.write(self._wmv[0 : _HDR_SIZE + n])
        self._fs.sync(f)

        cap = self.capacity
        if self.fill == cap:  # head == tail: we just overwrote the oldest waiting record
            if self._tail == head:
                self._peeked_seq = 0  # its ack can no longer apply
            self._tail = (self._tail + 1) % cap
            self.dropped += 1
        else:
            self.fill += 1
        self._head = (head + 1) % cap
        self.next_seq = seq + 1
        self.appended += 1
        return seq

    def peek(self):
        """The oldest waiting record as ``(seq, payload)``, or None when none waits.

        ``payload`` is a memoryview into the ring's read buffer: it ALIASES that buffer
        and is only valid until the next ``peek()``; copy it (``bytes(payload)``) to keep
        it. Damaged slots on the way are skipped, counted in ``corrupt_skipped``, and
        never returned.
        """
        cap = self.capacity
        while self.fill > 0:
            slot = self._tail
            if self._peeked_seq:  # same record as last time, buffer still holds it
                return self._peeked_seq, self._rmv[_HDR_SIZE : _HDR_SIZE + self._rlen]
            seq = self._read_slot(slot)
            if seq > self._acked:
                self._peeked_seq = seq
                return seq, self._rmv[_HDR_SIZE : _HDR_SIZE + self._rlen]
            # Damaged (torn write, bad CRC), blank, or not newer than what was acked:
            # never hand it out.
            self.corrupt_skipped += 1
            self._tail = (slot + 1) % cap
            self.fill -= 1
        return None

    def ack(self, seq):
        """The broker acknowledged ``seq``: advance the read cursor past it. Only the
        record last returned by ``peek()`` can be acknowledged; any other ``seq`` (a
        late or duplicate PUBACK, or a record dropped meanwhile) returns False and
        changes nothing."""
        if seq == 0 or seq != self._peeked_seq:
            return False
        self._peeked_seq = 0
        self._acked = seq
        self._tail = (self._tail + 1) % self.capacity
        self.fill -= 1
        self.sent += 1
        self._unsaved += 1
        if self._unsaved >= self._cursor_every:
            self.save()
        return True

    def save(self):
        """Persist the read cursor and the sequence floor now (A/B copy, see module)."""
        self._gen += 1
        self._floor = self.next_seq - 1
        buf = self._cbuf
        at = (self._gen & 1) * _CURSOR_COPY
        struct.pack_into(
            "<HHIII", buf, at, _CURSOR_MAGIC, _CURSOR_VERSION, self._gen, self._acked, self._floor
        )
        crc = crc32(self._cmv[at : at + _CURSOR_BODY]) & 0xFFFFFFFF
        struct.pack_into("<I", buf, at + _CURSOR_BODY, crc)
        f = self._cf
        if f is None:
            raise ValueError("ring is closed")
        f.seek(at)
        f.write(self._cmv[at : at + _CURSOR_COPY])
        self._fs.sync(f)
        self._unsaved = 0

    def close(self):
        """Save the cursor if acks are pending, and close the files."""
        if self._unsaved:
            self.save()
        for k in (0, 1):
            f = self._files[k]
            if f is not None:
                self._files[k] = None
                self._file_seg[k] = -1
                f.close()
        cf = self._cf
        if cf is not None:
            self._cf = None
            cf.close()

    def counters(self):
        """The counters as a dict, for the station's status payload."""
        return {
            "appended": self.appended,
            "sent": self.sent,
            "dropped": self.dropped,
            "corrupt_skipped": self.corrupt_skipped,
            "fill": self.fill,
            "capacity": self.capacity,
            "next_seq": self.next_seq,
        }

    # ------------------------------------------------------------------ internals

    def _seg_path(self, seg):
        return "%s/seg%d.bin" % (self._dir, seg)

    def _file(self, seg):
        if self._file_seg[0] == seg:
            self._victim = 1
            return self._files[0]
        if self._file_seg[1] == seg:
            self._victim = 0
            return self._files[1]
        k = self._victim
        old = self._files[k]
        if old is not None:
            self._files[k] = None
            self._file_seg[k] = -1
            old.close()
        f = self._fs.open(self._seg_path(seg), "r+b")
        self._files[k] = f
        self._file_seg[k] = seg
        self._victim = 1 - k
        return f

    def _read_slot(self, slot):
        """Read ``slot`` into the read buffer: its seq if valid, else _BLANK/_DAMAGED.
        Sets ``_rlen`` to the payload length of a valid slot."""
        f = self._file(slot // self._per_seg)
        f.seek((slot % self._per_seg) * self.slot_size)
        got = f.readinto(self._rmv)
        if got is None or got < _HDR_SIZE:
            return _DAMAGED
        magic, n, seq, crc = struct.unpack_from(_HDR_FMT, self._rbuf, 0)
        if magic != _SLOT_MAGIC:
            if magic == 0 and n == 0 and seq == 0 and crc == 0:
                return _BLANK
            return _DAMAGED
        if seq == 0 or n > self.max_payload or _HDR_SIZE + n > got:
            return _DAMAGED
        body = self._rmv[_HDR_SIZE : _HDR_SIZE + n]
        if crc32(body, crc32(self._rhdr)) & 0xFFFFFFFF != crc:
            return _DAMAGED
        self._rlen = n
        return seq

    def _ensure_file(self, path, size):
        """Create ``path`` with ``size`` zero bytes, or finish a creation cut short."""
        fs = self._fs
        try:
            have = fs.stat(path)[6]
        except OSError:
            have = -1
        if have == size:
            return
        if have > size:
            raise RingGeometryError(
                "%s holds %d bytes, the geometry asks for %d" % (path, have, size), path
            )
        f = fs.open(path, "wb" if have < 0 else "ab")
        try:
            zeros = memoryview(bytearray(min(size, 1024)))
            left = size - max(have, 0)
            while left > 0:
                k = min(left, len(zeros))
                f.write(zeros[0:k])
                left -= k
            fs.sync(f)
        finally:
            f.close()

    def _open(self):
        fs = self._fs
        try:
            fs.stat(self._dir)
        except OSError:
            fs.mkdir(self._dir)
        for seg in range(self._segments):
            self._ensure_file(self._seg_path(seg), self._per_seg * self.slot_size)
        cpath = self._dir + "/cursor.bin"
        self._ensure_file(cpath, 2 * _CURSOR_COPY)
        cf = fs.open(cpath, "r+b")
        self._cf = cf
        self._load_cursor(cf)
        self._recover()

    def _load_cursor(self, f):
        f.seek(0)
        got = f.readinto(self._cmv)
        best_gen = -1
        for at in (0, _CURSOR_COPY):
            if got is None or got < at + _CURSOR_BODY + 4:
                continue
            magic, version, gen, acked, floor, crc = struct.unpack_from(_CURSOR_FMT, self._cbuf, at)
            if magic != _CURSOR_MAGIC or version != _CURSOR_VERSION:
                continue
            if crc32(self._cmv[at : at + _CURSOR_BODY]) & 0xFFFFFFFF != crc:
                continue
            if gen > best_gen:
                best_gen = gen
                self._gen = gen
                self._acked = acked
                self._floor = floor

    def _recover(self):
        cap = self.capacity
        acked = self._acked
        max_seq = 0
        max_slot = -1
        low_seq = 0  # lowest seq still waiting (> acked)
        low_slot = -1
        damaged = bytearray(cap)  # once per open
        for slot in range(cap):
            seq = self._read_slot(slot)
            if seq == _DAMAGED:
                damaged[slot] = 1
            elif seq != _BLANK:
                if seq > max_seq:
                    max_seq = seq
                    max_slot = slot
                if seq > acked and (low_slot < 0 or seq < low_seq):
                    low_seq = seq
                    low_slot = slot
        head = (max_slot + 1) % cap if max_slot >= 0 else 0
        self._head = head
        if low_slot >= 0:
            self._tail = low_slot
            self.fill = (head - low_slot) % cap or cap
        else:
            self._tail = head
            self.fill = 0
        # Damaged slots in the waiting window are counted when peek() skips them; count
        # the others (typically the slot torn at the head) here, so none goes unseen.
        for slot in range(cap):
            if damaged[slot] and (slot - self._tail) % cap >= self.fill:
                self.corrupt_skipped += 1
        top = max_seq
        if self._floor > top:
            top = self._floor
        if acked > top:
            top = acked
        self.next_seq = top + 1
