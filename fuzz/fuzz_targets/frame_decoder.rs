//! `FrameHeader::decode` on arbitrary bytes, and the decode/encode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsc::proto::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let result = FrameHeader::decode(data);
    match result {
        Ok(Some((h, n))) => {
            assert!((2..=MAX_HEADER_LEN).contains(&n) && n <= data.len());
            assert_eq!(h.mask.is_some(), data[1] & 0x80 != 0);
            assert_eq!(h.opcode.as_u8(), data[0] & 0x0F);
            assert_eq!(h.payload_len >> 63, 0);
            if h.opcode.is_control() {
                assert!(h.fin && h.payload_len <= MAX_CONTROL_PAYLOAD as u64);
            }
            // The header's bytes alone decode the same; trailing bytes do not matter.
            assert_eq!(FrameHeader::decode(&data[..n]), Ok(Some((h, n))));
            // Every strict prefix just asks for more.
            for cut in 0..n {
                assert_eq!(FrameHeader::decode(&data[..cut]), Ok(None), "cut {cut}");
            }

            // Re-encoding: the shortest form, never longer than what was decoded (the peer may
            // use a longer length form), with the same first byte, and it decodes back.
            let mut out = Vec::new();
            h.encode(&mut out);
            assert_eq!(out.len(), h.encoded_len());
            assert!(out.len() <= n);
            assert_eq!(out[0], data[0]);
            assert_eq!(FrameHeader::decode(&out), Ok(Some((h, out.len()))));
            out.extend_from_slice(&data[n..]);
            assert_eq!(FrameHeader::decode(&out), Ok(Some((h, h.encoded_len()))));
            // decode(encode(h)) == h with the bytes arriving one at a time.
            for cut in 0..h.encoded_len() {
                assert_eq!(FrameHeader::decode(&out[..cut]), Ok(None));
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN),
        Err(e) => {
            let _ = e.to_string();
            // An error depends only on the bytes already seen: more bytes do not change it.
            let mut longer = data.to_vec();
            longer.extend_from_slice(&[0xAA; MAX_HEADER_LEN]);
            assert_eq!(FrameHeader::decode(&longer), Err(e));
        }
    }
});
