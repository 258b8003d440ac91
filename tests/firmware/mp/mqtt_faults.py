"""Connect to a misbehaving peer (the fake broker in test_mqtt.py) until ``connects``
sessions were established, printing DOWN <reason> for every lost link, then COUNTERS
and DONE. Keepalive and back-off run on a clock ``scale`` times faster than real time,
so a 60 s keepalive's dead-link detection takes about a second."""

import asyncio

from mqtt_common import FastClock, args, print_counters, reason

from firmware.mqtt import MQTTClient

A = args({"host": "127.0.0.1", "port": 1883, "connects": 3, "scale": 50, "timeout_ms": 20000})


async def main():
    fast = FastClock(A["scale"])
    client = MQTTClient(
        A["host"],
        A["port"],
        client_id="mp-faults",
        keepalive_s=60,
        will_topic=b"lantian/v1/station/mp-faults/status",
        on_disconnect=lambda e: print("DOWN", reason(e)),
        backoff_min_ms=500,
        backoff_max_ms=5000,
        clock=fast.clock,
        sleep_ms=fast.sleep_ms,
    )
    client.start()
    waited = 0
    while client.counters["connects"] < A["connects"] and waited < A["timeout_ms"]:
        await asyncio.sleep_ms(10)
        waited += 10
    # Stay on the last (well-behaved) link long enough for a few keepalive rounds.
    await asyncio.sleep_ms(1500)
    print("CONNECTED", int(client.isconnected()))
    print("LAST", reason(client.last_error) if client.last_error else "-")
    print_counters(client)
    await client.disconnect()
    print("DONE")


asyncio.run(main())
