// SPDX-License-Identifier: GPL-2.0

//! virtio-blk over a file or block device, or over a byte range of one
//! ([`range`], `--range OFFSET:LENGTH`): the guest's sector 0 is the
//! range's first byte and no request reaches outside it. `--readonly`
//! applies to whatever is exported.

pub(crate) mod range;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{Reader, Writer};

use super::engine::{log, Chain, Device, Done};
use super::mem::Mem;
use crate::error::{Error, Result};
use range::ByteRange;

/// Sector size of the virtio-blk protocol.
pub(crate) const SECTOR: u64 = 512;
/// Largest segment (`size_max`).
pub(crate) const SIZE_MAX: u32 = 128 << 10;
/// Largest request data (all segments).
const MAX_DATA: usize = 16 << 20;
/// Largest number of discard segments per request.
const MAX_DISCARD_SEG: u32 = 32;
/// Largest discard, in sectors.
const MAX_DISCARD_SECTORS: u32 = 1 << 22;
/// virtio-blk config size (up to `write_zeroes_may_unmap` and padding).
pub(crate) const CONFIG_LEN: usize = 0x3c;

/// A virtio-blk device.
pub(crate) struct Blk {
    file: File,
    name: String,
    /// The exported bytes of the file; the capacity is its length in
    /// sectors.
    range: ByteRange,
    capacity: u64,
    /// The file's size, against which `--range` is checked.
    file_size: u64,
    readonly: bool,
    discard: bool,
    serial: [u8; VIRTIO_BLK_ID_BYTES as usize],
    seg_max: u32,
    verbose: bool,
}

/// The default serial: the file name, cut to 20 bytes.
pub(crate) fn default_serial(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lincell".into());
    let mut s = String::new();
    for c in name.chars() {
        if s.len() + c.len_utf8() > VIRTIO_BLK_ID_BYTES as usize {
            break;
        }
        s.push(c);
    }
    s
}

impl Blk {
    /// Opens `path` (read-only with `readonly`).
    pub(crate) fn open(
        path: &Path,
        readonly: bool,
        serial: &str,
        queue_size: u16,
        verbose: bool,
    ) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let size = crate::sys::file_size(&file)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: size: {e}", path.display())))?;
        let discard = !readonly && file.metadata()?.is_file();
        Ok(Self::from_file(
            file,
            path.display().to_string(),
            size,
            readonly,
            discard,
            serial,
            queue_size,
            verbose,
        ))
    }

    /// A device over an open `file` of `size` bytes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_file(
        file: File,
        name: String,
        size: u64,
        readonly: bool,
        discard: bool,
        serial: &str,
        queue_size: u16,
        verbose: bool,
    ) -> Self {
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let n = serial.len().min(id.len());
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Blk {
            file,
            name,
            range: ByteRange::whole(size),
            capacity: size / SECTOR,
            file_size: size,
            readonly,
            discard,
            serial: id,
            // A chain holds the header and status descriptors too.
            seg_max: u32::from(queue_size).saturating_sub(2).clamp(1, 126),
            verbose,
        }
    }

    /// Exports only `range` of the file (which must lie inside it) instead
    /// of all of it.
    pub(crate) fn with_range(mut self, range: ByteRange) -> Result<Self> {
        range
            .fits(self.file_size)
            .map_err(|e| Error::Usage(format!("--range for {}: {e}", self.name)))?;
        self.range = range;
        self.capacity = range.len() / SECTOR;
        Ok(self)
    }

    /// Executes a request; returns the status and the bytes of data
    /// written into the chain (status excluded).
    fn execute(
        &mut self,
        kind: u32,
        sector: u64,
        reader: &mut Reader<'_>,
        writer: &mut Writer<'_>,
        data_in: usize,
    ) -> (u32, usize) {
        match kind {
            VIRTIO_BLK_T_IN => match self.locate(sector, data_in) {
                Err(e) => self.fail(e),
                Ok(at) => {
                    let mut buf = vec![0u8; data_in];
                    match self.file.read_exact_at(&mut buf, at) {
                        Err(e) => self.fail(format!("read {data_in} bytes at {at:#x}: {e}")),
                        Ok(()) => match writer.write_all(&buf) {
                            Ok(()) => (VIRTIO_BLK_S_OK, data_in),
                            Err(e) => self.fail(format!("copy to the guest: {e}")),
                        },
                    }
                }
            },
            VIRTIO_BLK_T_OUT => {
                if self.readonly {
                    return self.fail("write to a read-only device");
                }
                let len = reader.available_bytes();
                match self.locate(sector, len) {
                    Err(e) => self.fail(e),
                    Ok(at) => {
                        let mut buf = vec![0u8; len];
                        if let Err(e) = reader.read_exact(&mut buf) {
                            return self.fail(format!("copy from the guest: {e}"));
                        }
                        // One complete pwrite of the request data.
                        match self.file.write_all_at(&buf, at) {
                            Ok(()) => (VIRTIO_BLK_S_OK, 0),
                            Err(e) => self.fail(format!("write {len} bytes at {at:#x}: {e}")),
                        }
                    }
                }
            }
            VIRTIO_BLK_T_FLUSH => match self.file.sync_data() {
                Ok(()) => (VIRTIO_BLK_S_OK, 0),
                Err(e) => self.fail(format!("fdatasync: {e}")),
            },
            VIRTIO_BLK_T_GET_ID => {
                let n = data_in.min(self.serial.len());
                match writer.write_all(&self.serial[..n]) {
                    Ok(()) => (VIRTIO_BLK_S_OK, n),
                    Err(e) => self.fail(format!("copy to the guest: {e}")),
                }
            }
            VIRTIO_BLK_T_DISCARD if self.discard => self.discard(reader),
            _ => {
                if self.verbose {
                    log(format_args!("blk: unsupported request type {kind}"));
                }
                (VIRTIO_BLK_S_UNSUPP, 0)
            }
        }
    }

    /// File offset of `len` bytes at `sector`, if they lie inside the
    /// exported range.
    fn locate(&self, sector: u64, len: usize) -> Result<u64> {
        let sectors = len as u64 / SECTOR;
        if len as u64 % SECTOR != 0 {
            return Err(Error::Remote(format!(
                "data length {len} is not a multiple of {SECTOR}"
            )));
        }
        if len > MAX_DATA {
            return Err(Error::Remote(format!(
                "data length {len} exceeds {MAX_DATA}"
            )));
        }
        sector
            .checked_mul(SECTOR)
            .and_then(|at| self.range.map(at, len as u64))
            .ok_or_else(|| {
                Error::Remote(format!(
                    "sectors {sector}+{sectors} beyond the capacity of {} sectors",
                    self.capacity
                ))
            })
    }

    fn discard(&mut self, reader: &mut Reader<'_>) -> (u32, usize) {
        let n = reader.available_bytes() / 16;
        if n == 0 || n > MAX_DISCARD_SEG as usize || reader.available_bytes() % 16 != 0 {
            return self.fail(format!(
                "discard with {} bytes of segments",
                reader.available_bytes()
            ));
        }
        for _ in 0..n {
            let mut seg = [0u8; 16];
            if reader.read_exact(&mut seg).is_err() {
                return self.fail("discard segment unreadable");
            }
            let sector = u64::from_le_bytes(seg[..8].try_into().unwrap_or_default());
            let count = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
            let flags = u32::from_le_bytes(seg[12..].try_into().unwrap_or_default());
            if flags != 0 || count > MAX_DISCARD_SECTORS {
                return (VIRTIO_BLK_S_UNSUPP, 0);
            }
            let len = u64::from(count) * SECTOR;
            let Some(at) = sector
                .checked_mul(SECTOR)
                .and_then(|b| self.range.map(b, len))
            else {
                return self.fail(format!("discard {sector}+{count} out of range"));
            };
            let (Ok(o), Ok(l)) = (libc::off_t::try_from(at), libc::off_t::try_from(len)) else {
                return self.fail("discard range too large");
            };
            // SAFETY: fallocate takes no pointers.
            let r = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    o,
                    l,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                    return (VIRTIO_BLK_S_UNSUPP, 0);
                }
                return self.fail(format!("punch hole {at:#x}+{len:#x}: {e}"));
            }
        }
        (VIRTIO_BLK_S_OK, 0)
    }

    fn fail(&self, why: impl std::fmt::Display) -> (u32, usize) {
        log(format_args!("blk: request failed: {why}"));
        (VIRTIO_BLK_S_IOERR, 0)
    }
}

impl Device for Blk {
    fn device_id(&self) -> u16 {
        // CAST: virtio device ids are small.
        VIRTIO_ID_BLOCK as u16
    }

    fn features(&self) -> u64 {
        let mut f = 1u64 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_FLUSH;
        if self.readonly {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        if self.discard {
            f |= 1 << VIRTIO_BLK_F_DISCARD;
        }
        f
    }

    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; CONFIG_LEN];
        c[0x00..0x08].copy_from_slice(&self.capacity.to_le_bytes());
        c[0x08..0x0c].copy_from_slice(&SIZE_MAX.to_le_bytes());
        c[0x0c..0x10].copy_from_slice(&self.seg_max.to_le_bytes());
        // CAST: 512 fits.
        c[0x14..0x18].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        c[0x22..0x24].copy_from_slice(&1u16.to_le_bytes());
        if self.discard {
            c[0x24..0x28].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
            c[0x28..0x2c].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
            c[0x2c..0x30].copy_from_slice(&1u32.to_le_bytes());
        }
        c
    }

    fn num_queues(&self) -> usize {
        1
    }

    fn handle(&mut self, _q: usize, chain: Chain<'_>, mem: &Mem) -> Done {
        let head = chain.head_index();
        let mut writer = match Writer::new(mem, chain.clone()) {
            Ok(w) => w,
            Err(e) => {
                log(format_args!(
                    "blk: chain {head}: bad writable buffers ({e}); dropped"
                ));
                return Done::default();
            }
        };
        // CAST: saturating: lengths above 4 GiB cannot occur (the chain
        // sum is checked to fit a u32 by the queue crate).
        let writable = u32::try_from(writer.available_bytes()).unwrap_or(u32::MAX);
        if writable == 0 {
            log(format_args!("blk: chain {head}: no status byte; dropped"));
            return Done {
                written: 0,
                writable,
            };
        }
        let data_in = writer.available_bytes() - 1;
        let status_writer = writer.split_at(data_in);
        let (status, data) = match Reader::new(mem, chain) {
            Err(e) => self.fail(format!("chain {head}: bad readable buffers ({e})")),
            Ok(mut reader) => {
                let mut hdr = [0u8; 16];
                if reader.read_exact(&mut hdr).is_err() {
                    self.fail(format!(
                        "chain {head}: request header shorter than 16 bytes"
                    ))
                } else {
                    let kind = u32::from_le_bytes(hdr[..4].try_into().unwrap_or_default());
                    let sector = u64::from_le_bytes(hdr[8..].try_into().unwrap_or_default());
                    let r = self.execute(kind, sector, &mut reader, &mut writer, data_in);
                    if self.verbose {
                        log(format_args!(
                            "blk: chain {head}: type {kind} sector {sector} out {} in {data_in} -> status {} ({} bytes)",
                            reader.bytes_read().saturating_sub(16),
                            r.0,
                            r.1
                        ));
                    }
                    r
                }
            }
        };
        let mut status_writer = match status_writer {
            Ok(w) => w,
            Err(_) => {
                return Done {
                    written: 0,
                    writable,
                }
            }
        };
        // CAST: status values are small.
        if status_writer.write_all(&[status as u8]).is_err() {
            return Done {
                written: 0,
                writable,
            };
        }
        // The data written plus the status byte; `data <= data_in`.
        let written = u32::try_from(data + 1).unwrap_or(writable).min(writable);
        Done { written, writable }
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.readonly {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn summary(&self) -> String {
        format!(
            "virtio-blk on {}{}: {} sectors ({} MiB){}{}, serial {:?}, seg_max {}, size_max {}",
            self.name,
            if self.range.offset() != 0
                || self.range.len() != self.file_size - self.file_size % SECTOR
            {
                format!(" ({})", self.range)
            } else {
                String::new()
            },
            self.capacity,
            self.capacity / 2048,
            if self.readonly { ", read-only" } else { "" },
            if self.discard { ", discard" } else { "" },
            String::from_utf8_lossy(&self.serial).trim_end_matches('\0'),
            self.seg_max,
            SIZE_MAX
        )
    }
}
