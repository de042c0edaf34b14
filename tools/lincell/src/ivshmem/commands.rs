// SPDX-License-Identifier: GPL-2.0

//! One function per `lincell ivshmem` subcommand. Each gets its parsed
//! arguments ([`super::cli`]) and the output, and returns an [`Error`]
//! for `main` to report.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use lincell_shared::ivshmem::uapi::{self, DeviceInfo};
use serde::Serialize;

use super::cli::{
    CountersArgs, EchoArgs, InfoArgs, PeekArgs, PingpongArgs, PokeArgs, RingArgs, StateArgs,
    StatesArgs, WaitArgs,
};
use super::dev::{self, describe_error, pci_address, Device};
use super::endpoint::{self, Target, WaitMode};
use super::pingpong;
use crate::error::{Error, Result};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// `list`.
pub(crate) fn list(out: &mut dyn Write) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir("/dev")
        .map_err(|e| Error::io("/dev", e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix("ivshmem")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort_by_key(|n| n[7..].parse::<u64>().unwrap_or(u64::MAX));
    if names.is_empty() {
        writeln!(out, "no ivshmem devices (is ivshmem.ko loaded?)")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<10} {:<13} {:>3} {:>6} {:>7} {:>9}",
        "DEVICE", "PCI", "REV", "ID", "VECTORS", "SIZE"
    )?;
    for n in names {
        let pci = pci_address(&n).unwrap_or_else(|| "?".into());
        match Device::open(format!("/dev/{n}")) {
            Ok(d) => {
                let i = d.info();
                writeln!(
                    out,
                    "{n:<10} {pci:<13} {:>3} {:>6} {:>7} {:>9}",
                    i.revision,
                    i.own_id,
                    i.vectors,
                    human_size(i.shmem_size)
                )?;
            }
            Err(e) => writeln!(out, "{n:<10} {pci:<13} cannot open: {}", describe_error(&e))?,
        }
    }
    Ok(())
}

/// `info` of a device as JSON: every field of [`DeviceInfo`].
#[derive(Serialize)]
struct DeviceJson {
    device: String,
    revision: u32,
    own_id: u32,
    max_peers: u32,
    vectors: u32,
    protocol: u32,
    flags: u32,
    shmem_size: u64,
    state_table_offset: u64,
    state_table_size: u64,
    rw_offset: u64,
    rw_size: u64,
    output_offset: u64,
    output_size: u64,
}

impl DeviceJson {
    fn new(path: &Path, i: &DeviceInfo) -> Self {
        DeviceJson {
            device: path.display().to_string(),
            revision: i.revision,
            own_id: i.own_id,
            max_peers: i.max_peers,
            vectors: i.vectors,
            protocol: i.protocol,
            flags: i.flags,
            shmem_size: i.shmem_size,
            state_table_offset: i.state_table_offset,
            state_table_size: i.state_table_size,
            rw_offset: i.rw_offset,
            rw_size: i.rw_size,
            output_offset: i.output_offset,
            output_size: i.output_size,
        }
    }
}

/// `info` of a host peer as JSON.
#[derive(Serialize)]
struct PeerJson {
    socket: String,
    own_id: u16,
    vectors: usize,
    shmem_size: usize,
    rw_offset: usize,
    rw_size: usize,
    peers: Vec<u16>,
}

/// One JSON object and a newline.
fn write_json(out: &mut dyn Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

/// `info`.
pub(crate) fn info(a: &InfoArgs, out: &mut dyn Write) -> Result<()> {
    match a.target()? {
        Target::Device(p) => {
            let dev = Device::open(&p)?;
            if a.json {
                write_json(out, &DeviceJson::new(&p, dev.info()))
            } else {
                write!(out, "{}", info_text(&p, dev.info()))?;
                Ok(())
            }
        }
        Target::Socket(s) => {
            let ep = endpoint::PeerEndpoint::connect(&s)?;
            let (rw_offset, rw_size) = endpoint::Endpoint::rw_section(&ep);
            let p = ep.peer();
            if a.json {
                return write_json(
                    out,
                    &PeerJson {
                        socket: s.display().to_string(),
                        own_id: p.id(),
                        vectors: p.vectors(),
                        shmem_size: p.shm().len(),
                        rw_offset,
                        rw_size,
                        peers: p.peers(),
                    },
                );
            }
            let peers: Vec<String> = p.peers().iter().map(u16::to_string).collect();
            writeln!(out, "socket: {}", s.display())?;
            writeln!(out, "own id: {}", p.id())?;
            writeln!(out, "vectors: {}", p.vectors())?;
            writeln!(
                out,
                "shared memory: {} bytes ({})",
                p.shm().len(),
                human_size(p.shm().len() as u64)
            )?;
            writeln!(out, "r/w section: offset {rw_offset:#x}, {rw_size} bytes")?;
            writeln!(
                out,
                "other peers: {}",
                if peers.is_empty() {
                    "none".into()
                } else {
                    peers.join(" ")
                }
            )?;
            Ok(())
        }
    }
}

/// `1 MiB`, `4 KiB`, `512 B`.
pub(crate) fn human_size(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} B")
}

/// `DOORBELL|SECTIONS`, unknown bits in hex, or `none`.
fn flag_names(flags: u32) -> String {
    let mut v = Vec::new();
    for (bit, name) in [
        (uapi::INFO_DOORBELL, "DOORBELL"),
        (uapi::INFO_ONESHOT, "ONESHOT"),
        (uapi::INFO_SECTIONS, "SECTIONS"),
    ] {
        if flags & bit != 0 {
            v.push(name.to_string());
        }
    }
    let known = uapi::INFO_DOORBELL | uapi::INFO_ONESHOT | uapi::INFO_SECTIONS;
    if flags & !known != 0 {
        v.push(format!("{:#x}", flags & !known));
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join("|")
    }
}

/// `info` of a device as text.
fn info_text(path: &Path, i: &DeviceInfo) -> String {
    let kind = match i.revision {
        1 => "QEMU ivshmem",
        2 => "ivshmem 2.0",
        _ => "unknown",
    };
    format!(
        "device: {}\n\
         revision: {} ({kind})\n\
         own id: {}\n\
         max peers: {}\n\
         vectors: {}\n\
         protocol: {:#06x}\n\
         flags: {:#x} ({})\n\
         shared memory: {} bytes ({})\n\
         state table: offset {:#x}, {} bytes\n\
         r/w section: offset {:#x}, {} bytes\n\
         output sections: offset {:#x}, {} bytes each\n",
        path.display(),
        i.revision,
        i.own_id,
        i.max_peers,
        i.vectors,
        i.protocol,
        i.flags,
        flag_names(i.flags),
        i.shmem_size,
        human_size(i.shmem_size),
        i.state_table_offset,
        i.state_table_size,
        i.rw_offset,
        i.rw_size,
        i.output_offset,
        i.output_size
    )
}

/// `ring`.
pub(crate) fn ring(a: &RingArgs, out: &mut dyn Write) -> Result<()> {
    let (peer, vector, count) = (a.peer, a.vector, a.count);
    let mut ep = a.dev.target()?.open(WaitMode::Poll)?;
    let start = Instant::now();
    for _ in 0..count {
        ep.ring(peer, vector)?;
    }
    if count == 1 {
        writeln!(
            out,
            "rang peer {peer} vector {vector} from {}",
            ep.describe()
        )?;
    } else {
        let secs = start.elapsed().as_secs_f64();
        writeln!(
            out,
            "rang peer {peer} vector {vector} {count} times from {} in {secs:.2} s ({:.0}/s)",
            ep.describe(),
            count as f64 / secs.max(1e-9)
        )?;
    }
    Ok(())
}

/// `wait`.
pub(crate) fn wait(a: &WaitArgs, out: &mut dyn Write) -> Result<()> {
    let mode = if a.poll {
        WaitMode::Poll
    } else {
        WaitMode::Read
    };
    let mut ep = a.dev.target()?.open(mode)?;
    let ev = if a.nonblock {
        ep.try_wait()?
            .ok_or_else(|| Error::Failed("EAGAIN: no doorbell pending".into()))?
    } else {
        match ep.wait(u64::MAX, ms(a.timeout)) {
            Ok(ev) => ev,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Error::Failed(format!("timed out: {e}")))
            }
            Err(e) => return Err(e.into()),
        }
    };
    writeln!(out, "{:#x}", ev.mask)?;
    Ok(())
}

/// `state`.
pub(crate) fn state(a: &StateArgs, out: &mut dyn Write) -> Result<()> {
    let d = Device::open(&a.dev)?;
    match a.value {
        Some(v) => {
            d.set_state(v)?;
            writeln!(out, "state set to {v}")?;
            // The driver resets the state when the last user closes the
            // device; say so rather than surprise.
            writeln!(
                out,
                "note: the state returns to 0 when the last user closes {}",
                a.dev.display()
            )?;
        }
        None => writeln!(out, "{}", d.get_state()?)?,
    }
    Ok(())
}

/// `states`.
pub(crate) fn states(a: &StatesArgs, out: &mut dyn Write) -> Result<()> {
    let d = Device::open(&a.dev)?;
    let mut states = match d.peer_states() {
        Ok(s) => s,
        Err(e) if dev::errno_of(&e) == Some(libc::EOPNOTSUPP) => {
            return Err(Error::Io(io::Error::new(
                e.kind(),
                format!(
                    "{e}: this device has no state table (IVSHMEM_INFO_SECTIONS is {} in info.flags)",
                    if d.info().flags & uapi::INFO_SECTIONS != 0 {
                        "set"
                    } else {
                        "clear"
                    }
                ),
            )))
        }
        Err(e) => return Err(e.into()),
    };
    for (i, s) in states.iter().enumerate() {
        writeln!(out, "peer {i}: {s}")?;
    }
    if !a.watch {
        return Ok(());
    }
    let deadline = Instant::now() + ms(a.timeout);
    loop {
        out.flush()?;
        match d.poll_events(deadline) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let now = d.peer_states()?;
        for (i, (old, new)) in states.iter().zip(&now).enumerate() {
            if old != new {
                writeln!(out, "peer {i}: {old} -> {new}")?;
            }
        }
        states = now;
    }
}

/// `counters`.
pub(crate) fn counters(a: &CountersArgs, out: &mut dyn Write) -> Result<()> {
    let c = Device::open(&a.dev)?.counters()?;
    if c.is_empty() {
        writeln!(out, "no vectors")?;
    }
    for (v, n) in c.iter().enumerate() {
        writeln!(out, "vector {v}: {n}")?;
    }
    Ok(())
}

/// `peek`.
pub(crate) fn peek(a: &PeekArgs, out: &mut dyn Write) -> Result<()> {
    let ep = a.dev.target()?.open(WaitMode::Poll)?;
    let offset = a.offset.resolve(ep.as_ref());
    let shm = ep.shm();
    if let Some(want) = &a.wait_for {
        let deadline = Instant::now() + ms(a.timeout);
        let mut head = vec![0u8; want.len()];
        loop {
            shm.load_bytes(offset, &mut head)?;
            if head == want.as_bytes() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Failed(format!(
                    "timed out after {} ms waiting for {want:?} at {offset:#x}; found {:?}",
                    a.timeout,
                    String::from_utf8_lossy(&head)
                )));
            }
            std::thread::sleep(ms(5));
        }
    }
    let mut buf = vec![0u8; a.len];
    shm.load_bytes(offset, &mut buf)?;
    if a.hex {
        for (i, chunk) in buf.chunks(16).enumerate() {
            let bytes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(out, "{:08x}  {}", offset + i * 16, bytes.join(" "))?;
        }
    } else {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        writeln!(out, "{}", String::from_utf8_lossy(&buf[..end]))?;
    }
    Ok(())
}

/// `poke`.
pub(crate) fn poke(a: &PokeArgs, out: &mut dyn Write) -> Result<()> {
    let mut data = a.string.as_bytes().to_vec();
    if !a.no_nul {
        data.push(0);
    }
    let ep = a.dev.target()?.open(WaitMode::Poll)?;
    let offset = a.offset.resolve(ep.as_ref());
    ep.shm().store_bytes(offset, &data)?;
    writeln!(out, "wrote {} bytes at {offset:#x}", data.len())?;
    Ok(())
}

/// `echo`.
pub(crate) fn echo(a: &EchoArgs, out: &mut dyn Write) -> Result<()> {
    let mut ep = a.dev.target()?.open(WaitMode::Read)?;
    if !a.tap {
        writeln!(
            out,
            "echo: {} waiting for sessions ({:?})",
            ep.describe(),
            a.shm_offset
        )?;
    }
    let o = pingpong::EchoOptions {
        count: a.count,
        sessions: a.sessions,
        start_timeout: ms(a.start_timeout),
        timeout: ms(a.timeout),
        offset: a.shm_offset,
        tap: a.tap,
    };
    if pingpong::echo(ep.as_mut(), &o, out)?.passed() {
        Ok(())
    } else {
        Err(Error::Reported)
    }
}

/// `pingpong`.
pub(crate) fn pingpong(a: &PingpongArgs, out: &mut dyn Write) -> Result<()> {
    let mut ep = a
        .dev
        .target()?
        .open(a.mode.wait_mode().unwrap_or(WaitMode::Poll))?;
    let o = pingpong::PingOptions {
        peer: a.peer,
        vector: a.vector.unwrap_or(if ep.vectors() >= 2 { 1 } else { 0 }),
        count: a.count,
        mode: a.mode,
        timeout: ms(a.timeout),
        connect_timeout: ms(a.connect_timeout),
        stop: a.stop,
        offset: a.shm_offset,
    };
    let rep = pingpong::pingpong(ep.as_mut(), &o)?;
    pingpong::print_report(out, &rep, &o)?;
    if rep.passed() {
        Ok(())
    } else {
        Err(Error::Reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_formats() {
        let i = DeviceInfo {
            revision: 1,
            own_id: 2,
            max_peers: 65536,
            vectors: 2,
            flags: uapi::INFO_DOORBELL,
            shmem_size: 1 << 20,
            rw_size: 1 << 20,
            ..DeviceInfo::default()
        };
        let t = info_text(Path::new("/dev/ivshmem0"), &i);
        assert!(
            t.contains("revision: 1 (QEMU ivshmem)\nown id: 2\nmax peers: 65536\nvectors: 2\n"),
            "{t}"
        );
        assert!(t.contains("flags: 0x1 (DOORBELL)"), "{t}");
        assert!(t.contains("shared memory: 1048576 bytes (1 MiB)"), "{t}");
        let mut j = Vec::new();
        write_json(&mut j, &DeviceJson::new(Path::new("/dev/ivshmem0"), &i)).unwrap();
        assert_eq!(
            String::from_utf8(j).unwrap(),
            "{\"device\":\"/dev/ivshmem0\",\"revision\":1,\"own_id\":2,\"max_peers\":65536,\
             \"vectors\":2,\"protocol\":0,\"flags\":1,\"shmem_size\":1048576,\
             \"state_table_offset\":0,\"state_table_size\":0,\"rw_offset\":0,\
             \"rw_size\":1048576,\"output_offset\":0,\"output_size\":0}\n"
        );
        let mut j = Vec::new();
        let p = PeerJson {
            socket: "/tmp/a \"b\".sock".into(),
            own_id: 3,
            vectors: 2,
            shmem_size: 4096,
            rw_offset: 0,
            rw_size: 4096,
            peers: vec![1, 7],
        };
        write_json(&mut j, &p).unwrap();
        assert_eq!(
            String::from_utf8(j).unwrap(),
            "{\"socket\":\"/tmp/a \\\"b\\\".sock\",\"own_id\":3,\"vectors\":2,\"shmem_size\":4096,\
             \"rw_offset\":0,\"rw_size\":4096,\"peers\":[1,7]}\n"
        );
        assert_eq!(flag_names(0), "none");
        assert_eq!(
            flag_names(uapi::INFO_DOORBELL | uapi::INFO_SECTIONS | 0x100),
            "DOORBELL|SECTIONS|0x100"
        );
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1000), "1000 B");
    }
}
