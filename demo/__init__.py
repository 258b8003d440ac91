"""``make demo``: the whole Lantian chain on its embedded defaults, in simulated time.

Three emulated stations (pymodbus sensors on ptys, built from the device profiles) run
the real station firmware on the MicroPython unix port; their signed minute records go
through an MQTT broker (amqtt, in this process, unless ``--broker URL``) to the gateway
(``GatewayService``, in this process), which closes hours and days, flags exceedances,
computes AQI and publishes the results. A live terminal view shows what a subscriber to
the results sees; at the end an HTML report with charts goes to ``./out/``.

Like the tests, the demo is a harness: it may import ``hil_tests`` (emulators, station
rig). The product (drivers, firmware, native, gateway) never imports ``demo``.

    python -m demo                      # 3 simulated days (make demo)
    python -m demo --days 0.25 --quick  # 6 simulated hours, plain output (the test)
    python -m demo --broker mqtt://127.0.0.1:1883
"""
