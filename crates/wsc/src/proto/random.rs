//! Randomness for the client side of the protocol (masking keys, `Sec-WebSocket-Key`), from
//! the operating system's CSPRNG.
//!
//! Bytes are fetched a block at a time into a buffer per thread, and every byte is handed out
//! once. A connection thus costs no system call of its own for its handshake key and its
//! first masking keys, and holds no buffer of its own. (A process that forks should not keep
//! using wsc in both parent and child without a fresh thread: they would share the rest of the
//! block.)

use std::cell::RefCell;

/// Bytes of randomness fetched per system call: 128 masking keys, or 32 handshake keys.
const BLOCK: usize = 512;

thread_local! {
    /// The block, and how much of it is used.
    static POOL: RefCell<([u8; BLOCK], usize)> = const { RefCell::new(([0; BLOCK], BLOCK)) };
}

/// Fills `out` with random bytes. Fails only if the operating system cannot supply them.
pub fn fill(out: &mut [u8]) -> Result<(), getrandom::Error> {
    if out.len() > BLOCK / 4 {
        // Big requests straight from the system, leaving the block for small ones.
        return getrandom::getrandom(out);
    }
    POOL.with(|pool| {
        let (block, used) = &mut *pool.borrow_mut();
        if *used + out.len() > BLOCK {
            getrandom::getrandom(&mut block[..])?;
            *used = 0;
        }
        out.copy_from_slice(&block[*used..*used + out.len()]);
        // Handed out: never again.
        block[*used..*used + out.len()].fill(0);
        *used += out.len();
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_not_handed_out_twice() {
        let mut seen = std::collections::HashSet::new();
        // Several blocks' worth: refills happen, and no 16-byte value repeats.
        for _ in 0..200 {
            let mut key = [0u8; 16];
            fill(&mut key).unwrap();
            assert_ne!(key, [0; 16]);
            assert!(seen.insert(key), "a value came twice");
        }
        let mut big = [0u8; 300];
        fill(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
    }

    #[test]
    fn threads_get_different_bytes() {
        let here = {
            let mut k = [0u8; 16];
            fill(&mut k).unwrap();
            k
        };
        let there = std::thread::spawn(|| {
            let mut k = [0u8; 16];
            fill(&mut k).unwrap();
            k
        })
        .join()
        .unwrap();
        assert_ne!(here, there);
    }
}
