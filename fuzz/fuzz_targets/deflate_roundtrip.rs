//! permessage-deflate round trip: a client and a server `Connection` with matching codecs send
//! each other arbitrary messages; each must arrive exactly as sent (context takeover, window
//! sizes, levels, fragmentation and empty messages included).
//!
//! Flags: bit 0 client_no_context_takeover, bit 1 server_no_context_takeover, bits 2-3 the
//! client's window (8, 9, 12, 15), bits 4-5 the server's, bits 6-7 the level (0, 1, 6, 9).
//! Each chunk of the stream is one message: its first byte says bit 0 server-to-client, bit 1
//! text (the rest made UTF-8 lossily), bits 2-7 the fragment size (0: one frame); the other
//! bytes are the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsc::proto::deflate::{Codec, DeflateConfig, DeflateParams};
use wsc::proto::{Config, Connection, Message, Role};
use wsc_fuzz::Input;

const BITS: [u8; 4] = [8, 9, 12, 15];
const LEVELS: [u32; 4] = [0, 1, 6, 9];

fn endpoint(role: Role, flags: u8) -> Connection {
    let client_nct = flags & 1 != 0;
    let server_nct = flags & 2 != 0;
    let client_bits = BITS[usize::from((flags >> 2) & 3)];
    let server_bits = BITS[usize::from((flags >> 4) & 3)];
    let params = match role {
        Role::Client => DeflateParams {
            local_no_context_takeover: client_nct,
            remote_no_context_takeover: server_nct,
            local_max_window_bits: client_bits,
            remote_max_window_bits: server_bits,
        },
        Role::Server => DeflateParams {
            local_no_context_takeover: server_nct,
            remote_no_context_takeover: client_nct,
            local_max_window_bits: server_bits,
            remote_max_window_bits: client_bits,
        },
    };
    let config = DeflateConfig::default()
        .threshold(0)
        .level(LEVELS[usize::from(flags >> 6)]);
    let limits = Config::default()
        .max_frame_size(Some(1 << 20))
        .max_message_size(Some(1 << 20));
    Connection::with_deflate(role, limits, Some(Codec::new(params, &config)))
}

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let mut client = endpoint(Role::Client, input.flags);
    let mut server = endpoint(Role::Server, input.flags);
    for (i, chunk) in input.chunks().into_iter().enumerate() {
        let (control, payload) = chunk.split_first().unwrap_or((&0, &[]));
        let message = if control & 2 != 0 {
            Message::text(String::from_utf8_lossy(payload).into_owned())
        } else {
            Message::binary(payload.to_vec())
        };
        let (from, to) = if control & 1 != 0 {
            (&mut server, &mut client)
        } else {
            (&mut client, &mut server)
        };
        let fragment = usize::from(control >> 2);
        if fragment == 0 {
            from.send(message.clone()).unwrap();
        } else {
            from.send_fragmented(&message, fragment).unwrap();
        }
        // A big message is queued block by block: drain it all.
        let mut wire = Vec::new();
        while from.has_pending_output() {
            let n = from.pending_output().len();
            wire.extend_from_slice(from.pending_output());
            from.consume_output(n);
        }
        to.receive(&wire);
        let got = to.next_message();
        assert!(
            matches!(&got, Ok(Some(m)) if *m == message),
            "message {i} ({} bytes, {:?} -> {:?}) arrived as {got:?}",
            message.len(),
            from.role(),
            to.role()
        );
        assert!(matches!(to.next_message(), Ok(None)));
        assert_eq!(to.buffered_input(), 0);
    }
});
