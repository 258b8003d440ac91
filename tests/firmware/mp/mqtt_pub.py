"""Publish ``count`` QoS 1 records in order, the way the station's ring buffer does:
the cursor advances only when publish() returns True, otherwise the same record is
offered again. Prints CONNECTED, ACK <i>, COUNTERS ..., DONE."""

import asyncio

from mqtt_common import args, data_topic, payload, print_counters, reason, status_topic

from firmware.mqtt import MQTTClient

A = args(
    {
        "host": "127.0.0.1",
        "port": 1883,
        "cid": "mp-pub",
        "count": 10,
        "interval_ms": 0,
        "keepalive_s": 30,
        "idle_ms": 0,
        "backoff_max_ms": 2000,
        "publish_timeout_ms": 20000,
        "retransmit_ms": 5000,
    }
)


async def main():
    cid = A["cid"]
    client = MQTTClient(
        A["host"],
        A["port"],
        client_id=cid,
        keepalive_s=A["keepalive_s"],
        will_topic=status_topic(cid),
        will_payload=b'{"online": false}',
        backoff_min_ms=100,
        backoff_max_ms=A["backoff_max_ms"],
        publish_timeout_ms=A["publish_timeout_ms"],
        retransmit_ms=A["retransmit_ms"],
        on_disconnect=lambda e: print("DOWN", reason(e)),
        on_connect=lambda present: print(f"UP session={present}"),
    )
    client.start()
    if not await client.wait_connected(10000):
        print("NOCONNECT", reason(client.last_error))
        return
    print("CONNECTED")
    ok = await client.publish(status_topic(cid), b'{"online": true}', retain=True)
    print("STATUS", ok)
    topic = data_topic(cid)
    i = 0
    while i < A["count"]:
        if await client.publish(topic, payload(cid, i)):
            print("ACK", i)
            i += 1
            if i == 1 and A["idle_ms"]:
                await asyncio.sleep_ms(A["idle_ms"])
        else:
            print("RETRY", i, reason(client.last_error))
        if A["interval_ms"]:
            await asyncio.sleep_ms(A["interval_ms"])
    print_counters(client)
    await client.disconnect()
    print("DONE")


asyncio.run(main())
