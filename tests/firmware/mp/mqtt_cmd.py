"""Subscribe to the station's command topic and print CMD <payload> per message; stop
after ``count`` messages (or ``timeout_ms``). Prints UP session=<0|1>, SUBSCRIBED once
the SUBACK arrived (only when the broker had no session), COUNTERS, DONE."""

import asyncio

from mqtt_common import args, cmd_topic, print_counters, reason, status_topic

from firmware.mqtt import MQTTClient

A = args({"host": "127.0.0.1", "port": 1883, "cid": "mp-cmd", "count": 1, "timeout_ms": 15000})
got = []


def on_message(topic, payload, retained, dup):
    # topic/payload alias the client's receive buffer: copy what we keep.
    got.append(bytes(payload))
    print("CMD", bytes(topic).decode(), bytes(payload).decode(), int(dup))


async def main():
    cid = A["cid"]
    client = MQTTClient(
        A["host"],
        A["port"],
        client_id=cid,
        keepalive_s=30,
        will_topic=status_topic(cid),
        subscriptions=(cmd_topic(cid),),
        on_message=on_message,
        on_connect=lambda present: print(f"UP session={present}"),
        on_disconnect=lambda e: print("DOWN", reason(e)),
        backoff_min_ms=100,
        backoff_max_ms=1000,
    )
    client.start()
    if not await client.wait_connected(10000):
        print("NOCONNECT", reason(client.last_error))
        return
    waited = 0
    said = False
    while len(got) < A["count"] and waited < A["timeout_ms"]:
        if not said and client.counters["subacks"]:
            print("SUBSCRIBED")
            said = True
        await asyncio.sleep_ms(10)
        waited += 10
    print_counters(client)
    await client.disconnect()
    print("DONE")


asyncio.run(main())
