"""A third-party WebSocket server for the CLI tests: Python `websockets`.

Prints `LISTENING <port>` when ready, then one JSON line per event on stdout:
{"event": "headers", ...} on each connection and {"event": "closed", "code": ..} at its end.
Echoes every message back. With --send-headers, the request headers are also sent to the
client as the first (text, JSON) message.
"""

import argparse
import asyncio
import json
import sys

from websockets.asyncio.server import serve


def emit(obj):
    print(json.dumps(obj), flush=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--send-headers", action="store_true")
    parser.add_argument("--subprotocol", action="append", default=[])
    args = parser.parse_args()

    async def handler(ws):
        headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        emit({"event": "headers", "path": ws.request.path, "headers": headers,
              "subprotocol": ws.subprotocol})
        if args.send_headers:
            await ws.send(json.dumps(headers))
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            emit({"event": "closed", "code": ws.close_code, "reason": ws.close_reason})

    async with serve(handler, "127.0.0.1", 0, subprotocols=args.subprotocol or None,
                     compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
