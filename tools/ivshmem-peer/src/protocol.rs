// SPDX-License-Identifier: GPL-2.0
//! Wire format of the ivshmem server protocol.
//!
//! The server talks, the clients listen. Every message is one 8-byte
//! little-endian signed integer on a UNIX stream socket, optionally carrying
//! exactly one file descriptor as `SCM_RIGHTS` ancillary data:
//!
//! | value            | fd        | meaning                                        |
//! |------------------|-----------|------------------------------------------------|
//! | [`PROTOCOL_VERSION`] | none  | first message after connect                    |
//! | own id           | none      | second message: the id the client was given    |
//! | [`SHM_MESSAGE`]  | shm       | third message: the shared memory               |
//! | peer id          | eventfd   | one interrupt vector of that peer, in order    |
//! | peer id          | none      | that peer disconnected                         |

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

/// Protocol version sent as the very first message.
pub const PROTOCOL_VERSION: i64 = 0;
/// Value of the message that carries the shared-memory file descriptor.
pub const SHM_MESSAGE: i64 = -1;
/// Largest peer id the protocol allows.
pub const MAX_PEER_ID: u16 = u16::MAX;

/// Size of one message on the wire.
const MSG_LEN: usize = mem::size_of::<i64>();
/// Control buffer size for one descriptor.
// SAFETY: CMSG_SPACE only does arithmetic on its argument.
const CMSG_ONE_FD: usize =
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) } as usize;
/// Receive buffer, in 8-byte words (for cmsghdr alignment): room for several
/// descriptors so that a bad sender's extras are received and closed by us
/// instead of being silently dropped by truncation.
const RECV_CMSG_WORDS: usize = 16;

/// An `InvalidData` error: the peer on the other end broke the protocol.
pub fn protocol_error(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A length for `msghdr::msg_controllen` / `cmsghdr::cmsg_len`, whose
/// types differ between C libraries (glibc: `size_t`, musl: `socklen_t`).
/// Control buffers here are a few dozen bytes, so the conversion is exact.
#[allow(
    clippy::useless_conversion,
    reason = "a no-op on glibc, a narrowing on musl"
)]
fn c_len<T: TryFrom<usize> + Default>(n: usize) -> T {
    T::try_from(n).unwrap_or_default()
}

/// The inverse of [`c_len`].
#[allow(
    clippy::useless_conversion,
    reason = "a no-op on glibc, a widening on musl"
)]
fn rust_len<T: TryInto<usize>>(n: T) -> usize {
    n.try_into().unwrap_or(0)
}

/// Receives one message and the descriptor that came with it, if any.
///
/// Blocks (subject to the socket's receive timeout) until all 8 bytes are
/// in. Received descriptors are close-on-exec. A message that carries more
/// than one descriptor is an error and all its descriptors are closed. End
/// of stream is reported as [`io::ErrorKind::UnexpectedEof`].
pub fn recv_msg(sock: BorrowedFd<'_>) -> io::Result<(i64, Option<OwnedFd>)> {
    let mut data = [0u8; MSG_LEN];
    let mut cbuf = [0u64; RECV_CMSG_WORDS];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: MSG_LEN,
    };
    // SAFETY: msghdr is plain old data for which all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = c_len(mem::size_of_val(&cbuf));
    let received = loop {
        // SAFETY: msg points at `iov` and `cbuf`, which are live and as large
        // as msg says for the whole call.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if let Ok(n) = usize::try_from(r) {
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    // Take ownership of every descriptor first so that error paths close them.
    let mut fds = take_fds(&msg);
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(protocol_error(
            "message carried more file descriptors than fit (ancillary data truncated)",
        ));
    }
    if received == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    if received < MSG_LEN {
        recv_rest(sock, &mut data[received..])?;
    }
    if fds.len() > 1 {
        return Err(protocol_error(format!(
            "message carried {} file descriptors, expected at most one",
            fds.len()
        )));
    }
    Ok((i64::from_le_bytes(data), fds.pop()))
}

/// Collects the descriptors of every `SCM_RIGHTS` control message in `msg`.
fn take_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: msg's control pointer and length describe a buffer filled in by
    // recvmsg; the CMSG_* helpers stay inside it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points at a header inside the buffer.
        let hdr = unsafe { ptr::read_unaligned(cmsg) };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN only does arithmetic.
            let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
            let count =
                rust_len(hdr.cmsg_len).saturating_sub(header_len) / mem::size_of::<libc::c_int>();
            // SAFETY: the kernel put `count` ints after the header.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            for i in 0..count {
                // SAFETY: i < count, so the read stays inside this control
                // message; the kernel just installed this descriptor for us
                // and nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(ptr::read_unaligned(data.add(i))) });
            }
        }
        // SAFETY: msg and cmsg are valid, as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    fds
}

/// Reads the remainder of a message that arrived in pieces.
fn recv_rest(sock: BorrowedFd<'_>, mut rest: &mut [u8]) -> io::Result<()> {
    while !rest.is_empty() {
        // SAFETY: rest is a live, writable buffer of rest.len() bytes.
        let r = unsafe { libc::recv(sock.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(r) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed by the server in the middle of a message",
                ))
            }
            Ok(n) => rest = &mut rest[n..],
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// Sends one message, with `fd` attached as `SCM_RIGHTS` if given.
///
/// Never raises `SIGPIPE`: a closed peer is reported as an error.
pub fn send_msg(sock: BorrowedFd<'_>, value: i64, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let data = value.to_le_bytes();
    let mut cbuf = [0u64; CMSG_ONE_FD.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: MSG_LEN,
    };
    // SAFETY: msghdr is plain old data for which all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = c_len(CMSG_ONE_FD);
        // SAFETY: the control buffer is 8-byte aligned and CMSG_SPACE(int)
        // bytes long, so the first header and its one int fit inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = c_len(libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as usize);
            ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
        }
    }
    let sent = loop {
        // SAFETY: msg points at live buffers (`iov`, `data`, `cbuf`) of the
        // sizes it states.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if let Ok(n) = usize::try_from(r) {
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    // The descriptor went with the first byte; send what is left plainly.
    let mut rest = &data[sent..];
    while !rest.is_empty() {
        // SAFETY: rest is a live buffer of rest.len() bytes.
        let r = unsafe {
            libc::send(
                sock.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        match usize::try_from(r) {
            Ok(n) => rest = &rest[n..],
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn round_trip_with_and_without_fd() {
        let (a, b) = UnixStream::pair().unwrap();
        let efd = crate::eventfd::create().unwrap();
        send_msg(a.as_fd(), -1, Some(efd.as_fd())).unwrap();
        send_msg(a.as_fd(), 65535, None).unwrap();
        let (v, fd) = recv_msg(b.as_fd()).unwrap();
        assert_eq!(v, -1);
        // The received descriptor is the same eventfd: signal through it.
        crate::eventfd::signal(fd.unwrap().as_fd()).unwrap();
        assert_eq!(crate::eventfd::try_read(efd.as_fd()).unwrap(), Some(1));
        let (v, fd) = recv_msg(b.as_fd()).unwrap();
        assert_eq!(v, 65535);
        assert!(fd.is_none());
    }

    #[test]
    fn eof_is_unexpected_eof() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert_eq!(
            recv_msg(b.as_fd()).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
