// SPDX-License-Identifier: GPL-2.0
//! One vfio-user endpoint: a UNIX socket one QEMU guest at a time attaches
//! its `vfio-user-pci` device to.
//!
//! The socket layer is kept thin: the `vfio_user` crate decodes messages and
//! calls [`Backend`], which forwards to the socket-independent
//! [`Device`](super::device::Device). When QEMU connects, the guest takes
//! the next free peer id, a [`Device`](super::device::Device) is built for
//! it (its BAR2 map areas depend on the id in strict mode, so the vfio-user
//! server is built per connection over the same listening socket) and a
//! thread forwards its doorbells; when QEMU goes away (exit, crash, a
//! protocol error, even a panic while decoding), the peer leaves and the
//! endpoint waits for the next connection.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ivshmem_peer::{eventfd, poll};
use vfio_bindings::bindings::vfio::{
    vfio_region_info, vfio_region_sparse_mmap_area, VFIO_IRQ_INFO_EVENTFD,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, ServerBackend, ServerRegion, SparseArea};

use super::config::{CONFIG_SIZE, REG_BAR_SIZE};
use super::device::{irqs, region, Device, DeviceParams};
use super::irq;
use super::Hub;

/// How often a waiting endpoint looks at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// The vfio-user server's view of a [`Device`] (and the hub, for logs).
struct Backend<'a>(&'a mut Device<Hub>, &'a Hub);

impl ServerBackend for Backend<'_> {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.0
            .region_read(region, offset, data)
            .map_err(io::Error::from)
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0
            .region_write(region, offset, data)
            .map_err(io::Error::from)
    }

    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        _offset: u64,
        _address: u64,
        _size: u64,
        _fd: Option<File>,
    ) -> io::Result<()> {
        // ivshmem does no DMA: guest memory is never touched (the fd, if
        // any, is closed here).
        Ok(())
    }

    fn dma_unmap(&mut self, _flags: DmaUnmapFlags, _address: u64, _size: u64) -> io::Result<()> {
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.0.reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        self.1.log(format_args!(
            "peer {}: SET_IRQS index {index} flags {flags:#x} start {start} count {count}, {} eventfds",
            self.0.id(),
            fds.len()
        ));
        self.0
            .set_irqs(index, flags, start, count, fds)
            .map_err(io::Error::from)
    }
}

/// A listening vfio-user socket and the thread serving it.
#[derive(Debug)]
pub struct Endpoint {
    path: PathBuf,
    inode: (u64, u64),
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Creates the socket at `path` (replacing a stale socket) and starts
    /// serving guests on it until `stop` is set.
    pub(crate) fn start(
        path: &Path,
        hub: Arc<Hub>,
        params: DeviceParams,
        stop: &'static AtomicBool,
    ) -> io::Result<Self> {
        let path = std::path::absolute(path)?;
        let shown = path.display().to_string();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(&path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{shown} exists and is not a socket"),
                ))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {shown}: {e}")))?;
        let meta = std::fs::symlink_metadata(&path)?;
        let thread = std::thread::Builder::new()
            .name(format!("vfio-user {shown}"))
            .spawn(move || serve(&listener, &hub, params, stop, &shown))?;
        Ok(Self {
            path,
            inode: (meta.dev(), meta.ino()),
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the serving thread has ended (the stop flag was set while no
    /// guest was attached, or the socket failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Serves one guest after the other on `listener`.
fn serve(
    listener: &UnixListener,
    hub: &Arc<Hub>,
    params: DeviceParams,
    stop: &AtomicBool,
    shown: &str,
) {
    while !stop.load(Ordering::SeqCst) {
        match poll::wait_readable(listener.as_fd(), Some(STOP_CHECK)) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("ivshmem-server: {shown}: {e}; endpoint closed");
                return;
            }
        }
        let joined = hub.table().add_guest();
        let (id, events) = match joined {
            Ok(j) => j,
            Err(e) => {
                eprintln!("ivshmem-server: {shown}: refusing a guest: {e}");
                // Accept and close, so that QEMU fails instead of waiting.
                drop(listener.accept());
                continue;
            }
        };
        hub.log(format_args!("{shown}: guest is peer {id}"));
        if let Err(e) = serve_guest(listener, hub, params, id, events) {
            eprintln!("ivshmem-server: {shown}: guest peer {id}: {e}");
        }
        hub.table().drop_clients(vec![id]);
        hub.log(format_args!("{shown}: guest peer {id} left"));
    }
}

/// Serves the pending connection on `listener` as peer `id`, whose
/// eventfds are `events`, until it closes.
fn serve_guest(
    listener: &UnixListener,
    hub: &Arc<Hub>,
    params: DeviceParams,
    id: u16,
    events: Vec<OwnedFd>,
) -> io::Result<()> {
    let mut device =
        Device::new(id, params, hub.clone(), hub.stats.clone()).map_err(io::Error::from)?;
    let stop = eventfd::create()?;
    let stop_ring = stop.try_clone()?;
    let forwarder = {
        let (gate, stats) = (device.gate(), hub.stats.clone());
        std::thread::Builder::new()
            .name(format!("ivshmem peer {id} irqs"))
            .spawn(move || irq::forward(events, stop, gate, stats))?
    };
    let server = vfio_user::Server::from_owned_fd(
        OwnedFd::from(listener.try_clone()?),
        true,
        irq_infos(hub.params.vectors),
        regions(&device, hub),
    );
    // A panic in the vfio-user crate (e.g. on a malformed message) ends
    // this connection only.
    let result = catch_unwind(AssertUnwindSafe(|| {
        server.run(&mut Backend(&mut device, hub))
    }));
    let _ = eventfd::signal(stop_ring.as_fd());
    let _ = forwarder.join();
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(io::Error::other(format!("connection ended: {e}"))),
        Err(_) => Err(io::Error::other(
            "connection dropped after a panic in the vfio-user layer",
        )),
    }
}

/// The interrupts: MSI-X with one eventfd per vector, nothing else.
fn irq_infos(vectors: u16) -> Vec<IrqInfo> {
    (0..irqs::COUNT)
        .map(|index| IrqInfo {
            index,
            flags: if index == irqs::MSIX {
                VFIO_IRQ_INFO_EVENTFD
            } else {
                0
            },
            count: if index == irqs::MSIX {
                u32::from(vectors)
            } else {
                0
            },
        })
        .collect()
}

/// The regions: BAR0, BAR1, BAR2 (mappable where the device says) and the
/// configuration space; the other VFIO PCI regions are empty.
fn regions(device: &Device<Hub>, hub: &Hub) -> Vec<ServerRegion> {
    let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    let areas: Vec<SparseArea> = device
        .map_areas()
        .into_iter()
        .map(|a| SparseArea {
            area: vfio_region_sparse_mmap_area {
                offset: a.offset,
                size: a.len,
            },
        })
        .collect();
    (0..region::COUNT)
        .map(|index| {
            let (size, flags) = match index {
                region::BAR0 | region::BAR1 => (REG_BAR_SIZE, rw),
                region::BAR2 if !areas.is_empty() => {
                    (hub.params.bar2_size, rw | VFIO_REGION_INFO_FLAG_MMAP)
                }
                region::BAR2 => (hub.params.bar2_size, rw),
                // CAST: 256.
                region::CONFIG => (CONFIG_SIZE as u64, rw),
                _ => (0, 0),
            };
            let bar2 = index == region::BAR2 && !areas.is_empty();
            ServerRegion {
                region_info: vfio_region_info {
                    // CAST: the structure is 32 bytes.
                    argsz: std::mem::size_of::<vfio_region_info>() as u32,
                    flags,
                    index,
                    cap_offset: 0,
                    size,
                    // Offset of the region in the memory file.
                    offset: 0,
                },
                sparse_areas: if bar2 { areas.clone() } else { Vec::new() },
                mmap_fd: bar2.then(|| hub.memory_fd()),
            }
        })
        .collect()
}
