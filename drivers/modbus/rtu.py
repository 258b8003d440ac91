"""Modbus RTU framing: request builders, the response parser and serial-line timing.

Follows the Modbus Application Protocol Specification V1.1b3 (PDUs of function codes
03, 04, 06 and 16, exception responses, §6 and §7) and Modbus over Serial Line
Specification and Implementation Guide V1.02 (RTU framing, CRC and timing, §2.5.1).

RTU frame (ADU)::

    address (1) | function (1) | data (0..252) | CRC low | CRC high     <= 256 bytes

Builders write into a caller's preallocated buffer and return the frame length; invalid
arguments are programming errors and raise ``ValueError``. The parser never raises on
wire data: whatever bytes arrive, it returns one of the status codes below and fills a
preallocated ``Response``.
"""

from array import array

from drivers._compat import const
from drivers.modbus.crc import append_crc, crc16

# --- Transaction status (this project's codes; what the parser concluded) ---
OK = const(0)  # a valid response carrying the requested data
TIMEOUT = const(1)  # nothing received
CRC_ERROR = const(2)  # enough bytes, but no frame with a valid CRC (Serial Line §2.5.1.2)
TRUNCATED = const(3)  # fewer bytes than the response needs, and no valid frame
WRONG_ADDRESS = const(4)  # a valid frame, but from another server address
WRONG_FUNCTION = const(5)  # a valid frame from our server, for another function code
BAD_LENGTH = const(6)  # valid frame, but byte count or FC06/FC16 echo does not match
EXCEPTION = const(7)  # the server answered with an exception response (App. Protocol §7)

_STATUS_NAMES = (
    "ok",
    "timeout",
    "crc_error",
    "truncated",
    "wrong_address",
    "wrong_function",
    "bad_length",
    "exception",
)

# --- Exception codes (Modbus Application Protocol V1.1b3 §7) ---
ILLEGAL_FUNCTION = const(0x01)  # function code not supported by the server
ILLEGAL_DATA_ADDRESS = const(0x02)  # register range not available
ILLEGAL_DATA_VALUE = const(0x03)  # value in the request not allowed
SERVER_DEVICE_FAILURE = const(0x04)  # unrecoverable error in the server
ACKNOWLEDGE = const(0x05)  # accepted, long-running; poll for completion later
SERVER_DEVICE_BUSY = const(0x06)  # busy with a long command; retry later
MEMORY_PARITY_ERROR = const(0x08)  # file record memory parity error (FC20/21)
GATEWAY_PATH_UNAVAILABLE = const(0x0A)  # gateway could not allocate a path
GATEWAY_TARGET_FAILED = const(0x0B)  # gateway: target device did not respond

_EXCEPTION_NAMES = {
    ILLEGAL_FUNCTION: "illegal_function",
    ILLEGAL_DATA_ADDRESS: "illegal_data_address",
    ILLEGAL_DATA_VALUE: "illegal_data_value",
    SERVER_DEVICE_FAILURE: "server_device_failure",
    ACKNOWLEDGE: "acknowledge",
    SERVER_DEVICE_BUSY: "server_device_busy",
    MEMORY_PARITY_ERROR: "memory_parity_error",
    GATEWAY_PATH_UNAVAILABLE: "gateway_path_unavailable",
    GATEWAY_TARGET_FAILED: "gateway_target_failed",
}

# --- Function codes (Modbus Application Protocol V1.1b3 §6) ---
READ_HOLDING_REGISTERS = const(0x03)  # §6.3
READ_INPUT_REGISTERS = const(0x04)  # §6.4
WRITE_SINGLE_REGISTER = const(0x06)  # §6.6
WRITE_MULTIPLE_REGISTERS = const(0x10)  # §6.12
_EXCEPTION_BIT = const(0x80)  # exception response: function | 0x80, §7

# --- Limits ---
MAX_READ_COUNT = const(125)  # FC03/FC04 quantity 1..125 (0x7D), App. Protocol §6.3/§6.4
MAX_WRITE_COUNT = const(123)  # FC16 quantity 1..123 (0x7B), App. Protocol §6.12
MAX_ADU = const(256)  # RTU ADU: 1 address + 253 PDU + 2 CRC, Serial Line §2.5.1
MAX_SERVER_ADDRESS = const(247)  # unicast 1..247, 0 = broadcast, Serial Line §2.2
BROADCAST_ADDRESS = const(0)  # writes only, no response, Serial Line §2.1
EXCEPTION_RESPONSE_LENGTH = const(5)  # address, fc|0x80, exception code, CRC (2)
_WRITE_RESPONSE_LENGTH = const(8)  # FC06/FC16 echo: address, fc, 2 x uint16, CRC (2)
_READ_RESPONSE_OVERHEAD = const(5)  # address, fc, byte count, CRC (2); + 2 per register
_FOREIGN_SCAN = const(4)  # offsets examined for another server's frame (diagnosis only)

# --- Timing (Modbus over Serial Line V1.02 §2.5.1.1) ---
_FIXED_GAP_US = const(1750)  # t3.5 above 19200 baud
_FIXED_INTER_CHAR_US = const(750)  # t1.5 above 19200 baud
_FIXED_TIMING_ABOVE = const(19200)  # baud rates above this use the fixed values


def status_name(status):
    """``"ok"``, ``"timeout"``, ``"crc_error"`` ... for a status code."""
    if 0 <= status < len(_STATUS_NAMES):
        return _STATUS_NAMES[status]
    return "unknown_status_%d" % status


def exception_name(code):
    """``"illegal_function"``, ``"server_device_busy"`` ... for a Modbus exception code."""
    name = _EXCEPTION_NAMES.get(code)
    if name is None:
        return "unknown_exception_%d" % code
    return name


class ModbusError(Exception):
    """A transaction that did not return data, for callers who prefer exceptions.

    ``status`` is one of the status codes; ``exception_code`` is the server's exception
    code when ``status == EXCEPTION`` and 0 otherwise.
    """

    def __init__(self, status, exception_code=0):
        if status == EXCEPTION:
            msg = "modbus %s: %s (exception code %d)" % (
                status_name(status),
                exception_name(exception_code),
                exception_code,
            )
        else:
            msg = "modbus %s (status %d)" % (status_name(status), status)
        super().__init__(msg)
        self.status = status
        self.exception_code = exception_code


# --- Timing ---


def char_time_us(baudrate, bits_per_char=11):
    """Duration of one character on the wire in µs, rounded (11 bits: start, 8 data,
    parity or second stop, stop — Serial Line §2.5.1)."""
    return (bits_per_char * 1000000 + baudrate // 2) // baudrate


def frame_gap_us(baudrate, bits_per_char=11):
    """t3.5, the silence that delimits frames (Serial Line §2.5.1.1): 3.5 character
    times, fixed at 1750 µs above 19200 baud."""
    if baudrate > _FIXED_TIMING_ABOVE:
        return _FIXED_GAP_US
    return (35 * bits_per_char * 100000 + baudrate // 2) // baudrate


def inter_char_timeout_us(baudrate, bits_per_char=11):
    """t1.5, the longest silence allowed inside a frame (Serial Line §2.5.1.1): 1.5
    character times, fixed at 750 µs above 19200 baud."""
    if baudrate > _FIXED_TIMING_ABOVE:
        return _FIXED_INTER_CHAR_US
    return (15 * bits_per_char * 100000 + baudrate // 2) // baudrate


def wire_time_us(baudrate, request_len, response_len, bits_per_char=11):
    """Time the request and response bytes occupy the wire, in µs, without the two
    t3.5 gaps and without the server's own latency."""
    bits = (request_len + response_len) * bits_per_char * 1000000
    return (bits + baudrate // 2) // baudrate


# --- Request builders (Application Protocol §6) ---


def _check_address(address, broadcast_ok):
    if address == BROADCAST_ADDRESS and broadcast_ok:
        return
    if address < 1 or address > MAX_SERVER_ADDRESS:
        raise ValueError("server address must be 1..247 (0 = broadcast, writes only)")


def _check_space(buf, n):
    if len(buf) < n:
        raise ValueError("buffer too small for the frame")


def _put_u16(buf, i, value):
    buf[i] = (value >> 8) & 0xFF
    buf[i + 1] = value & 0xFF


def build_read(buf, address, function, start, count):
    """FC03/FC04 request ``address fc start(2) count(2) crc(2)`` into ``buf``; returns 8."""
    _check_address(address, False)
    if not _is_read(function):
        raise ValueError("read function must be 3 or 4")
    if count < 1 or count > MAX_READ_COUNT:
        raise ValueError("read count must be 1..125")
    if start < 0 or start + count > 0x10000:
        raise ValueError("register range outside 0..0xFFFF")
    _check_space(buf, 8)
    buf[0] = address
    buf[1] = function
    _put_u16(buf, 2, start)
    _put_u16(buf, 4, count)
    return append_crc(buf, 6)


def build_write_single(buf, address, register, value):
    """FC06 request ``address 06 register(2) value(2) crc(2)`` into ``buf``; returns 8."""
    _check_address(address, True)
    if register < 0 or register > 0xFFFF:
        raise ValueError("register must be 0..0xFFFF")
    if value < 0 or value > 0xFFFF:
        raise ValueError("register value must be 0..0xFFFF")
    _check_space(buf, 8)
    buf[0] = address
    buf[1] = WRITE_SINGLE_REGISTER
    _put_u16(buf, 2, register)
    _put_u16(buf, 4, value)
    return append_crc(buf, 6)


def build_write_multiple(buf, address, start, values, count=None):
    """FC16 request ``address 10 start(2) count(2) bytes(1) values(2*count) crc(2)``.

    Writes the first ``count`` (default ``len(values)``) values; returns ``9 + 2*count``.
    """
    _check_address(address, True)
    if count is None:
        count = len(values)
    if count < 1 or count > MAX_WRITE_COUNT or count > len(values):
        raise ValueError("write count must be 1..123 and <= len(values)")
    if start < 0 or start + count > 0x10000:
        raise ValueError("register range outside 0..0xFFFF")
    n = 7 + 2 * count
    _check_space(buf, n + 2)
    buf[0] = address
    buf[1] = WRITE_MULTIPLE_REGISTERS
    _put_u16(buf, 2, start)
    _put_u16(buf, 4, count)
    buf[6] = 2 * count
    for i in range(count):
        value = values[i]
        if value < 0 or value > 0xFFFF:
            raise ValueError("register value must be 0..0xFFFF")
        _put_u16(buf, 7 + 2 * i, value)
    return append_crc(buf, n)


def expected_response_length(function, count):
    """Length of a normal response ADU: FC03/04 ``5 + 2*count``, FC06/FC16 8.

    An exception response is always ``EXCEPTION_RESPONSE_LENGTH`` (5) bytes.
    """
    if _is_read(function):
        if count < 1 or count > MAX_READ_COUNT:
            raise ValueError("read count must be 1..125")
        return _READ_RESPONSE_OVERHEAD + 2 * count
    if function == WRITE_SINGLE_REGISTER:
        return _WRITE_RESPONSE_LENGTH
    if function == WRITE_MULTIPLE_REGISTERS:
        if count < 1 or count > MAX_WRITE_COUNT:
            raise ValueError("write count must be 1..123")
        return _WRITE_RESPONSE_LENGTH
    raise ValueError("unsupported function code")


# --- Response parsing ---


class Response:
    """The outcome of one transaction, preallocated once and refilled by the parser.

    ``status`` is a status code; ``exception_code`` the server's exception code (when
    ``status == EXCEPTION``); ``address``, ``function``, ``start``, ``count`` describe
    the request. For FC03/FC04 ``registers[0:count]`` hold the values read; for FC06
    ``registers[0]`` holds the echoed value. ``resync_skipped`` counts bytes skipped
    before the frame (e.g. the 0x00 glitch after an RS-485 direction switch).
    """

    def __init__(self):
        self.registers = array("H", [0] * MAX_READ_COUNT)
        self.status = TIMEOUT
        self.exception_code = 0
        self.address = 0
        self.function = 0
        self.start = 0
        self.count = 0
        self.resync_skipped = 0

    def reset(self, address, function, start, count):
        self.status = TIMEOUT
        self.exception_code = 0
        self.address = address
        self.function = function
        self.start = start
        self.count = count
        self.resync_skipped = 0

    @property
    def ok(self):
        return self.status == OK

    def values(self):
        """A new list of the registers read (allocates; use ``registers`` in hot paths)."""
        regs = self.registers
        return [regs[i] for i in range(self.count)]

    def raise_for_status(self):
        """Raise ``ModbusError`` unless ``status`` is OK; returns self otherwise."""
        if self.status != OK:
            raise ModbusError(self.status, self.exception_code)
        return self

    def __repr__(self):
        return "<Response %s addr=%d fc=%d start=%d count=%d exc=%d skipped=%d>" % (
            status_name(self.status),
            self.address,
            self.function,
            self.start,
            self.count,
            self.exception_code,
            self.resync_skipped,
        )


def _is_read(function):
    # FC03 and FC04 are adjacent codes; a range test builds no tuple on the device.
    return READ_HOLDING_REGISTERS <= function <= READ_INPUT_REGISTERS


def _u16(buf, i):
    return (buf[i] << 8) | buf[i + 1]


def _frame_length(buf, off, n, fc, function, count):
    # Length implied by a frame header at ``off`` whose function byte is ``fc``: the
    # byte count field for FC03/04 when present, otherwise the expected length.
    if fc & _EXCEPTION_BIT:
        return EXCEPTION_RESPONSE_LENGTH
    if _is_read(function):
        if off + 2 < n:
            return _READ_RESPONSE_OVERHEAD + buf[off + 2]
        return _READ_RESPONSE_OVERHEAD + 2 * count
    return _WRITE_RESPONSE_LENGTH


def parse_response(resp, buf, n, address, function, start, count, value=-1):
    """Parse the ``n`` bytes received in ``buf`` as the answer to a request; fill
    ``resp`` and return its status. Never raises on wire data.

    ``function`` is the request's function code (3, 4, 6 or 16); ``count`` the number
    of registers requested (1 for FC06); ``value`` the FC06 value written, checked
    against the echo when >= 0.

    Resynchronisation: bytes before the frame are skipped (and counted in
    ``resp.resync_skipped``) when a later offset holds our address, our function code
    (or its exception form) and a valid CRC over the length that header implies. Bytes
    after a valid frame are ignored. Without a valid frame the status says why:
    TIMEOUT (nothing), TRUNCATED (a header but too few bytes, or too few bytes overall),
    WRONG_ADDRESS / WRONG_FUNCTION (a CRC-valid frame that is not ours), else
    CRC_ERROR.
    """
    expected = expected_response_length(function, count)  # ValueError: caller's bug
    resp.reset(address, function, start, count)
    if n > len(buf):
        n = len(buf)
    if n <= 0:
        return TIMEOUT
    exc_fn = function | _EXCEPTION_BIT
    first = -1  # offset of the first header of ours
    first_len = 0
    for off in range(n - 1):
        if buf[off] != address:
            continue
        fc = buf[off + 1]
        if fc != function and fc != exc_fn:
            continue
        length = _frame_length(buf, off, n, fc, function, count)
        if first < 0:
            first = off
            # A corrupt byte count must not claim more bytes than the answer needs.
            first_len = length if length < expected else expected
        end = off + length
        if end <= n and crc16(buf, off, end) == 0:
            resp.resync_skipped = off
            resp.status = _decode(resp, buf, off, fc, function, start, count, value)
            return resp.status
    if first >= 0:
        if first + first_len > n:
            resp.status = TRUNCATED
        else:
            resp.status = CRC_ERROR
        return resp.status
    resp.status = _foreign(buf, n, address, function, count, expected)
    if resp.status == OK:  # no foreign frame either
        resp.status = TRUNCATED if n < expected else CRC_ERROR
    return resp.status


def _decode(resp, buf, off, fc, function, start, count, value):
    # A CRC-valid frame with our address and function (or its exception form).
    if fc != function:
        resp.exception_code = buf[off + 2]
        return EXCEPTION
    if _is_read(function):
        if buf[off + 2] != 2 * count:
            return BAD_LENGTH
        regs = resp.registers
        i = off + 3
        for k in range(count):
            regs[k] = (buf[i] << 8) | buf[i + 1]
            i += 2
        return OK
    if _u16(buf, off + 2) != start:
        return BAD_LENGTH  # echo names another register
    if function == WRITE_SINGLE_REGISTER:
        echoed = _u16(buf, off + 4)
        resp.registers[0] = echoed
        if value >= 0 and echoed != value:
            return BAD_LENGTH  # echo carries another value
        return OK
    if _u16(buf, off + 4) != count:
        return BAD_LENGTH  # FC16 echo of another quantity
    return OK


def _foreign(buf, n, address, function, count, expected):
    # Diagnosis only: a CRC-valid frame at one of the first offsets that is not ours.
    # Lengths tried: ours, an exception's, a write echo's, and the one its byte count
    # implies. Returns WRONG_ADDRESS, WRONG_FUNCTION, or OK for "none found".
    last = n - 4
    if last > _FOREIGN_SCAN - 1:
        last = _FOREIGN_SCAN - 1
    for off in range(last + 1):
        room = n - off
        implied = _READ_RESPONSE_OVERHEAD + buf[off + 2]
        for length in (expected, EXCEPTION_RESPONSE_LENGTH, _WRITE_RESPONSE_LENGTH, implied):
            if length <= room and crc16(buf, off, off + length) == 0:
                if buf[off] != address:
                    return WRONG_ADDRESS
                return WRONG_FUNCTION
    return OK
