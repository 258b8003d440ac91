"""CRC-16/MODBUS, table driven (Modbus over Serial Line V1.02, §2.5.1.2 and §6.2.2).

The RTU frame check is a CRC-16 with the reflected polynomial 0xA001 (0x8005 bit
reversed), initial value 0xFFFF, no final XOR. It covers the address, function code and
data bytes, and is appended low byte first. Because the CRC is reflected and sent low
byte first, running it over a whole frame *including* its two CRC bytes gives 0: that is
how a received frame is checked without slicing it.

The 256-entry table is built once at import into an ``array('H')`` (512 bytes of RAM);
``crc16`` then costs one table look-up per byte and allocates nothing.
"""

from array import array

from drivers._compat import const

_POLY = const(0xA001)  # x16+x15+x2+1 reflected, Serial Line V1.02 §6.2.2
_INIT = const(0xFFFF)  # CRC register preset to all ones, Serial Line V1.02 §6.2.2


def _build_table():
    table = array("H", [0] * 256)
    for i in range(256):
        crc = i
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ _POLY
            else:
                crc >>= 1
        table[i] = crc
    return table


CRC_TABLE = _build_table()


def crc16(buf, start=0, end=None):
    """CRC-16/MODBUS of ``buf[start:end]`` (any bytes-like object), without slicing.

    The result goes on the wire low byte first. Over a complete frame including its
    CRC the result is 0.
    """
    if end is None:
        end = len(buf)
    table = CRC_TABLE
    crc = _INIT
    for i in range(start, end):
        crc = (crc >> 8) ^ table[(crc ^ buf[i]) & 0xFF]
    return crc


def append_crc(buf, n):
    """Write the CRC of ``buf[0:n]`` at ``buf[n]``, ``buf[n + 1]`` (low byte first).

    Returns the new frame length ``n + 2``.
    """
    crc = crc16(buf, 0, n)
    buf[n] = crc & 0xFF
    buf[n + 1] = crc >> 8
    return n + 2


def frame_crc_ok(buf, start, end):
    """True when ``buf[start:end]`` is a frame whose last two bytes are its valid CRC."""
    return end - start >= 4 and crc16(buf, start, end) == 0
