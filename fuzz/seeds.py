#!/usr/bin/env python3
"""Writes a tiny seed corpus for each fuzz target into fuzz/corpus/<target>/.

The corpus directories are gitignored; run this once before fuzzing (it overwrites only the
seed-* files it writes). Inputs use the layout of fuzz/src/lib.rs:
[flags][n][n chunk lengths][stream].
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
KEY_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # accept value for dGhlIHNhbXBsZSBub25jZQ==


def inp(flags, lens, stream):
    assert len(lens) < 16
    return bytes([flags, len(lens)]) + bytes(lens) + stream


def frame(opcode, payload, fin=True, mask=None, rsv1=False):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += bytes(mask)
    return head + payload


def write(target, seeds):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for i, s in enumerate(seeds):
        with open(os.path.join(d, f"seed-{i:02}"), "wb") as f:
            f.write(s)


def main():
    m = [0x37, 0xFA, 0x21, 0x3D]
    write("frame_decoder", [
        frame(1, b"Hello")[:2],
        frame(2, b"x" * 300)[:4],
        frame(2, b"x" * 70000)[:10],
        frame(9, b"ping", mask=m)[:6],
        bytes([0x88, 0xFE, 0x00, 0x7D]) + bytes(m),
        bytes([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
    ])

    ok = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Accept: {KEY_ACCEPT}\r\n")
    write("handshake_response", [
        inp(0, [], (ok + "\r\n").encode() + b"\x81\x02hi"),
        inp(0, [7, 1, 30], (ok + "Sec-WebSocket-Protocol: chat\r\n\r\n").encode()),
        inp(1, [16], (ok + "Sec-WebSocket-Extensions: permessage-deflate; "
                      "server_no_context_takeover; client_max_window_bits=10\r\n\r\n").encode()),
        inp(0, [20, 0, 5], b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\nX-Why: t\r\n\r\nnope!"),
        inp(2, [], b"HTTP/1.1 500 Oops\r\n\r\n" + b"x" * 40),
    ])

    req = ("GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n").encode()
    write("handshake_request", [inp(0, [], req), inp(4, [10, 3], req), inp(2, [], req)])

    hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])  # "Hello" deflated (RFC 7692)
    euro = "€".encode()
    for_client = (frame(1, b"Hello") + frame(2, bytes(range(200)))
                  + frame(1, euro[:1], fin=False) + frame(9, b"p") + frame(0, euro[1:])
                  + frame(8, b"\x03\xe8bye"))
    for_server = (frame(1, b"Hello", mask=m) + frame(2, b"z" * 130, fin=False, mask=m)
                  + frame(0, b"end", mask=m) + frame(10, b"", mask=m) + frame(8, b"", mask=m))
    write("connection", [
        inp(0, [], for_client),
        inp(0, [3, 1, 9], for_server),
        inp(4, [1], for_client),
        inp(2, [], frame(2, b"q" * 100) + frame(2, b"q" * 100, mask=m)),
        inp(1, [], frame(1, hello, rsv1=True) + frame(1, hello, rsv1=True, mask=m)),
        inp(8, [], frame(8, b"\x03\xe8") + frame(8, b"\x03\xe8", mask=m)),
    ])

    # deflate_roundtrip: one chunk per message, first byte = direction/text/fragment size.
    msgs = [b"\x02hello", b"\x03world", b"\x02" + b"abc" * 30, b"\x0e" + b"abc" * 30 + b"d"]
    write("deflate_roundtrip", [
        inp(0x3C, [len(x) for x in msgs], b"".join(msgs)),
        inp(0xC0 | 0x01, [len(msgs[0]), len(msgs[2])], msgs[0] + msgs[2]),
    ])


if __name__ == "__main__":
    main()
