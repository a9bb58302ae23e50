"""A third-party WebSocket server for tests: Python `websockets`.

Prints `LISTENING <port>` when ready, then one JSON line per event on stdout:
{"event": "headers", ...} on each connection (with the negotiated extensions) and
{"event": "closed", "code": ...} at its end. Echoes every message back.

Options: --send-headers sends the request headers to the client as the first (JSON) message;
--subprotocol NAME (repeatable); --deflate enables permessage-deflate with the given
parameters (--server-no-context-takeover, --client-no-context-takeover,
--server-max-window-bits N, --client-max-window-bits N); without --deflate, no compression.
"""

import argparse
import asyncio
import json
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


def emit(obj):
    print(json.dumps(obj), flush=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--send-headers", action="store_true")
    parser.add_argument("--subprotocol", action="append", default=[])
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--server-no-context-takeover", action="store_true")
    parser.add_argument("--client-no-context-takeover", action="store_true")
    parser.add_argument("--server-max-window-bits", type=int)
    parser.add_argument("--client-max-window-bits", type=int)
    args = parser.parse_args()

    extensions = []
    if args.deflate:
        extensions.append(ServerPerMessageDeflateFactory(
            server_no_context_takeover=args.server_no_context_takeover,
            client_no_context_takeover=args.client_no_context_takeover,
            server_max_window_bits=args.server_max_window_bits,
            client_max_window_bits=args.client_max_window_bits,
        ))

    async def handler(ws):
        headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        emit({"event": "headers", "path": ws.request.path, "headers": headers,
              "subprotocol": ws.subprotocol,
              "extensions": ws.response.headers.get("Sec-WebSocket-Extensions")})
        if args.send_headers:
            await ws.send(json.dumps(headers))
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            emit({"event": "closed", "code": ws.close_code, "reason": ws.close_reason})

    async with serve(handler, "127.0.0.1", 0, subprotocols=args.subprotocol or None,
                     compression=None, extensions=extensions, max_size=2**24) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
