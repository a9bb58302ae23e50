//! How many bytes of ours the peer has acknowledged, as the kernel counts them: the async
//! write timeout's measure of progress where TLS holds output that the connection has
//! already handed on (rustls keeps up to 64 KiB of records while the socket is full).

/// Bytes the peer has acknowledged on `tcp` (Linux: `TCP_INFO`'s `tcpi_bytes_acked`, since
/// Linux 4.1); `None` where the system does not say.
#[cfg(target_os = "linux")]
pub(crate) fn bytes_acked(tcp: &impl std::os::fd::AsFd) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let fd = tcp.as_fd().as_raw_fd();
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable `tcp_info` of `len` bytes, zeroed (every field an
    // integer), and `fd` a socket borrowed for the call; the kernel writes at most `len`
    // bytes and says how many.
    #[allow(unsafe_code)]
    let (rc, info) = unsafe {
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        );
        (rc, info.assume_init())
    };
    // A kernel older than the field writes less of the struct.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
    (rc == 0 && len as usize >= needed).then_some(info.tcpi_bytes_acked)
}

/// Elsewhere the system is not asked.
#[cfg(not(target_os = "linux"))]
pub(crate) fn bytes_acked<T>(_tcp: &T) -> Option<u64> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn counts_what_the_peer_acknowledged() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let before = bytes_acked(&client).unwrap();
        client.write_all(&[7u8; 1000]).unwrap();
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).unwrap();
        // Loopback acknowledges at once, but the count may lag the read by a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while bytes_acked(&client).unwrap() < before + 1000 {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
