// SPDX-License-Identifier: GPL-2.0

//! A TAP device as a virtio-net [`Port`]: `/dev/net/tun` with
//! `IFF_TAP | IFF_NO_PI` (plain Ethernet frames, no packet-information
//! prefix, no virtio header), non-blocking. An existing (persistent) TAP of
//! that name is attached; otherwise the kernel creates one that lives as
//! long as the backend. Needs `CAP_NET_ADMIN` (or a persistent TAP owned
//! by the user).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::Port;
use crate::error::{Error, Result};

/// The clone device of the TUN/TAP driver.
const TUN_PATH: &str = "/dev/net/tun";

/// `struct ifreq` with the members used here: the name and one `int` /
/// `short` of the union (flags, MTU), padded to the kernel's 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    /// `ifr_flags` (a `short`, first bytes) or `ifr_mtu` (an `int`).
    value: libc::c_int,
    _pad: [u8; 20],
}

impl IfReq {
    fn new(name: &str) -> Self {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            value: 0,
            _pad: [0; 20],
        };
        // The name was checked to fit with its NUL (`check_name`).
        let n = name.len().min(libc::IFNAMSIZ - 1);
        r.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        r
    }

    fn name(&self) -> String {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// Checks an interface name: 1 to 15 bytes, no `/`, whitespace or NUL.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(Error::Usage(format!(
            "interface name `{name}` must have 1 to {} bytes",
            libc::IFNAMSIZ - 1
        )));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
        || name == "."
        || name == ".."
    {
        return Err(Error::Usage(format!(
            "interface name `{name}` has a character Linux refuses"
        )));
    }
    Ok(())
}

/// An attached TAP device.
pub(crate) struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to (or creates) the TAP device `name`.
    pub(crate) fn open(name: &str) -> Result<Self> {
        check_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|e| Error::Remote(format!("{TUN_PATH}: {e}")))?;
        let mut req = IfReq::new(name);
        // CAST: the flags fit the `short` the kernel reads.
        req.value = libc::IFF_TAP | libc::IFF_NO_PI;
        // The kernel reads `ifr_flags` as a short at the union's start: on
        // a little-endian host that is the low half of `value`.
        #[cfg(target_endian = "big")]
        {
            req.value <<= 16;
        }
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a
        // live, writable value of its 40-byte layout.
        let r = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                crate::sys::ioctl_request(libc::TUNSETIFF as u32),
                &mut req as *mut IfReq,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EPERM) {
                " (needs CAP_NET_ADMIN, or a persistent TAP owned by this user)"
            } else if e.raw_os_error() == Some(libc::EBUSY) {
                " (another process has it, or it is a TUN device)"
            } else {
                ""
            };
            return Err(Error::Remote(format!("TAP {name}: TUNSETIFF: {e}{hint}")));
        }
        Ok(Tap {
            file,
            name: req.name(),
        })
    }

    /// The interface's name as the kernel has it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A datagram socket for interface ioctls.
    fn ctl_socket() -> Result<OwnedFd> {
        // SAFETY: socket takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::Remote(format!(
                "socket: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The interface's MTU.
    pub(crate) fn mtu(&self) -> Result<u16> {
        let s = Self::ctl_socket()?;
        let mut req = IfReq::new(&self.name);
        // SAFETY: SIOCGIFMTU writes `ifr_mtu` of the live `req`.
        let r = unsafe {
            libc::ioctl(
                s.as_raw_fd(),
                crate::sys::ioctl_request(libc::SIOCGIFMTU as u32),
                &mut req as *mut IfReq,
            )
        };
        if r < 0 {
            return Err(Error::Remote(format!(
                "TAP {}: SIOCGIFMTU: {}",
                self.name,
                io::Error::last_os_error()
            )));
        }
        u16::try_from(req.value)
            .map_err(|_| Error::Remote(format!("TAP {}: MTU {} too large", self.name, req.value)))
    }

    /// Sets the interface's MTU.
    pub(crate) fn set_mtu(&self, mtu: u16) -> Result<()> {
        let s = Self::ctl_socket()?;
        let mut req = IfReq::new(&self.name);
        req.value = libc::c_int::from(mtu);
        // SAFETY: SIOCSIFMTU reads `ifr_name` and `ifr_mtu` of the live `req`.
        let r = unsafe {
            libc::ioctl(
                s.as_raw_fd(),
                crate::sys::ioctl_request(libc::SIOCSIFMTU as u32),
                &mut req as *mut IfReq,
            )
        };
        if r < 0 {
            return Err(Error::Remote(format!(
                "TAP {}: cannot set MTU {mtu}: {}",
                self.name,
                io::Error::last_os_error()
            )));
        }
        Ok(())
    }
}

impl Port for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            return match self.file.read(buf) {
                Ok(n) => Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        loop {
            return match self.file.write(frame) {
                Ok(n) if n == frame.len() => Ok(()),
                Ok(n) => Err(io::Error::other(format!(
                    "short write ({n} of {} bytes)",
                    frame.len()
                ))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    fn describe(&self) -> String {
        format!("tap:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(IfReq::new("lct0").name(), "lct0");
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(check_name("lct0").is_ok());
        assert!(check_name("tap%d").is_ok());
        for bad in ["", "a/b", "a b", "0123456789abcdef", "x:y", ".."] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
