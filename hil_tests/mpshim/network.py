"""``network`` for the MicroPython unix port: a WLAN interface a test can switch off.

The unix port has no ``network`` module; its sockets use the host's network directly.
This shim gives the firmware the ``network.WLAN`` it uses on an ESP32/RP2040 board, with
the link state under the test harness's control:

``LANTIAN_NET_FILE`` names a file holding ``up`` or ``down`` (surrounding whitespace
ignored). The file is read on every ``isconnected()``/``status()``/``connect()``, so a
test cuts the station's network by writing ``down`` and restores it with ``up``. Write
it atomically (temporary file + rename; ``hil_tests/mpshim_host.set_network`` does): an
empty read — a writer's truncate caught half way — keeps the previous state. Any other
content raises ``ShimConfigError``. Unset variable or missing file: the link is up.

Behaviour, modelled on the esp32/rp2 ports:

- ``connect()`` needs ``active(True)`` first (ESP32 raises "Wifi Not Started"; here
  ``OSError``). With the link down it fails: ``status()`` is ``STAT_NO_AP_FOUND`` and
  ``isconnected()`` False. With the link up it succeeds at once (``STAT_GOT_IP``).
- After a ``connect()`` the interface keeps trying in the background, as the ESP-IDF and
  CYW43 drivers do: when the file goes back to ``up``, ``isconnected()`` is True again
  without another ``connect()``. ``disconnect()`` or ``active(False)`` stop that.
- ``ifconfig()`` gives loopback addresses while connected and ``0.0.0.0`` otherwise.

What this does NOT do: cut sockets. A socket the firmware opens reaches the host's
loopback whatever the file says, so a test of a true outage also stops the broker (or
blocks its port) for the same window; the shim makes the firmware *see* the outage the
way it would on a board (WLAN down, reconnect logic exercised).

Status codes are the rp2 (CYW43) port's; the ESP32 port uses other numbers for the same
names, so firmware must compare with the named constants only.
"""

import os

STA_IF = 0
AP_IF = 1

STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 3
STAT_CONNECT_FAIL = -1
STAT_NO_AP_FOUND = -2
STAT_WRONG_PASSWORD = -3

_hostname = ["lantian-shim"]
_last_state = [True]  # the link state seen last (an empty read keeps it)


class ShimConfigError(Exception):
    """An environment variable or control file the shim reads is malformed."""

    def __init__(self, variable, problem):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def link_up():
    """The harness's link state: True unless ``LANTIAN_NET_FILE`` says ``down``."""
    path = os.getenv("LANTIAN_NET_FILE")
    if not path:
        return True
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return True  # no file: the harness has not cut anything
    if text == "up":
        _last_state[0] = True
    elif text == "down":
        _last_state[0] = False
    elif text:
        raise ShimConfigError("LANTIAN_NET_FILE", f"{path} holds {text!r}, not 'up' or 'down'")
    return _last_state[0]


def hostname(name=None):
    if name is None:
        return _hostname[0]
    _hostname[0] = name
    return None


def country(code=None):
    return "XX" if code is None else None


class WLAN:
    """A station (or AP) interface whose link follows ``LANTIAN_NET_FILE``."""

    IF_STA = STA_IF
    IF_AP = AP_IF
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __init__(self, interface_id=STA_IF):
        self.interface_id = interface_id
        self._active = False
        self._wanted = False  # connect() called and not undone: keep (re)connecting
        self._ssid = None
        self._failed = False
        self.connect_attempts = 0
        self.connect_failures = 0

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._wanted = False
        return None

    def connect(self, ssid=None, key=None, *, bssid=None, **kw):
        if not self._active:
            raise OSError("WLAN not active: call active(True) first")
        self._ssid = ssid
        self._wanted = True
        self.connect_attempts += 1
        if link_up():
            self._failed = False
        else:
            self._failed = True
            self.connect_failures += 1

    def disconnect(self):
        self._wanted = False
        self._failed = False

    def isconnected(self):
        return self._active and self._wanted and link_up()

    def status(self, param=None):
        if param == "rssi":
            return -55 if self.isconnected() else -127
        if param is not None:
            raise ValueError(f"unknown status parameter {param!r}")
        if not self._active or not self._wanted:
            return STAT_IDLE
        if link_up():
            return STAT_GOT_IP
        return STAT_NO_AP_FOUND if self._failed else STAT_CONNECTING

    def ifconfig(self, config=None):
        if config is not None:
            return None
        if self.isconnected():
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def ipconfig(self, name=None, **kw):
        if name == "addr4":
            a = self.ifconfig()
            return (a[0], a[1])
        return None

    def config(self, *args, **kw):
        if kw:
            return None
        if args and args[0] == "mac":
            return b"\x02\x4c\x54\x00\x00\x01"
        if args and args[0] == "ssid":
            return self._ssid
        if args and args[0] == "hostname":
            return _hostname[0]
        raise ValueError(f"unknown config parameter {args!r}")

    def scan(self):
        if not self._active or not link_up():
            return []
        return [(b"lantian-shim", b"\x02\x4c\x54\x00\x00\x02", 1, -55, 3, False)]
