// SPDX-License-Identifier: GPL-2.0

//! `lincell ivshmem`: use `/dev/ivshmemN` from a guest, or join the ivshmem
//! server as a host peer, with the same subcommands.
//!
//! - [`cli`]: the subcommands' arguments and help text;
//! - [`commands`]: one function per subcommand;
//! - [`dev`]: the safe wrapper over the character device (ioctls, read,
//!   poll, mmap);
//! - [`endpoint`]: one trait over a device and a host peer;
//! - [`proto`]: the ping-pong session header in shared memory;
//! - [`pingpong`]: the `pingpong` initiator and the `echo` responder;
//! - [`latency`]: `lincell latency`, the real-time loop across cells over a
//!   message channel;
//! - [`copybench`]: the copy rate between the R/W section and RAM;
//! - [`bench`](mod@bench): latency statistics.
//!
//! The ABI self-test that the guest tests run is a binary of its own,
//! `ivshmem-abi-test` (`src/bin/ivshmem-abi-test.rs`), over [`dev`].

mod bench;
mod cli;
mod commands;
mod copybench;
pub mod dev;
pub(crate) mod endpoint;
pub mod latency;
mod pingpong;
mod proto;

use std::io::{self, Write};

pub use cli::Args;
use cli::Cmd;

use crate::error::Result;

/// Runs `lincell ivshmem ...`, printing to stdout.
pub fn run(args: Args) -> Result<()> {
    dispatch(args.cmd, &mut io::stdout().lock())
}

/// Runs one subcommand.
fn dispatch(cmd: Cmd, out: &mut dyn Write) -> Result<()> {
    match cmd {
        Cmd::List => commands::list(out),
        Cmd::Info(a) => commands::info(&a, out),
        Cmd::Ring(a) => commands::ring(&a, out),
        Cmd::Wait(a) => commands::wait(&a, out),
        Cmd::State(a) => commands::state(&a, out),
        Cmd::States(a) => commands::states(&a, out),
        Cmd::Counters(a) => commands::counters(&a, out),
        Cmd::Peek(a) => commands::peek(&a, out),
        Cmd::Poke(a) => commands::poke(&a, out),
        Cmd::Echo(a) => commands::echo(&a, out),
        Cmd::Pingpong(a) => commands::pingpong(&a, out),
        Cmd::Copybench(a) => copybench::copybench(&a, out),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::endpoint::{self, Target, WaitMode};
    use super::*;
    use crate::error::Error;

    /// Runs one command line, returning its result and output.
    fn run_cmd(args: &[&str]) -> (Result<()>, String) {
        let mut out = Vec::new();
        let r = dispatch(cli::tests::parse(args).unwrap(), &mut out);
        (r, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn peek_and_poke_through_a_host_peer() {
        let server = endpoint::tests::TestServer::start(1);
        let sock = server.socket.to_string_lossy().into_owned();
        let (r, text) = run_cmd(&["poke", "--socket", &sock, "64K", "hello"]);
        assert!(r.is_ok());
        assert_eq!(text, "wrote 6 bytes at 0x10000\n");
        let ep = Target::Socket(server.socket.clone())
            .open(WaitMode::Poll)
            .unwrap();
        let mut b = [0u8; 6];
        ep.shm().load_bytes(64 << 10, &mut b).unwrap();
        assert_eq!(&b, b"hello\0");

        let (r, text) = run_cmd(&[
            "peek",
            "--socket",
            &sock,
            "0x10000",
            "5",
            "--wait-for",
            "hel",
            "--timeout",
            "1000",
        ]);
        assert!(r.is_ok());
        assert_eq!(text, "hello\n");
        // Without a layout header the R/W section is the whole region.
        let (r, text) = run_cmd(&["peek", &sock, "rw+64K", "8", "--hex"]);
        assert!(r.is_ok());
        assert_eq!(text, "00010000  68 65 6c 6c 6f 00 00 00\n");

        let (r, _) = run_cmd(&[
            "peek",
            "--socket",
            &sock,
            "0x10000",
            "5",
            "--wait-for",
            "bye",
            "--timeout",
            "50",
        ]);
        assert!(matches!(r, Err(Error::Failed(_))), "timed out");
        let (r, _) = run_cmd(&["peek", &sock, "2M", "5"]);
        assert!(matches!(r, Err(Error::Io(_))), "out of bounds");
    }

    #[test]
    fn info_and_ring_through_host_peers() {
        let server = endpoint::tests::TestServer::start(2);
        let sock = server.socket.to_string_lossy().into_owned();
        let mut other = endpoint::PeerEndpoint::connect(&server.socket).unwrap();
        let (r, text) = run_cmd(&["info", "--socket", &sock]);
        assert!(r.is_ok());
        assert!(
            text.contains("vectors: 2\n") && text.contains("other peers: 0\n"),
            "{text}"
        );
        assert!(
            text.contains("r/w section: offset 0x0, 1048576 bytes"),
            "{text}"
        );
        let (r, text) = run_cmd(&["info", &sock, "--json"]);
        assert!(r.is_ok());
        let keys = [
            "socket",
            "own_id",
            "vectors",
            "shmem_size",
            "rw_offset",
            "rw_size",
            "peers",
        ];
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), keys.len());
        assert!(
            text.starts_with("{\"socket\":") && text.ends_with("]}\n"),
            "{text}"
        );
        assert_eq!(v["vectors"], 2);
        assert_eq!(v["shmem_size"], 1 << 20);
        // The peer that stays; the previous `info` may still be listed if
        // the server has not yet seen it leave (a race under load).
        let peers = v["peers"].as_array().unwrap();
        assert!(
            peers.contains(&serde_json::json!(endpoint::Endpoint::id(&other))),
            "{text}"
        );
        assert!(peers.len() <= 2, "{text}");
        let mut at = 0;
        for k in keys {
            let i = text.find(&format!("\"{k}\":")).unwrap();
            assert!(i >= at, "{k} out of order in {text}");
            at = i;
        }
        let (r, text) = run_cmd(&["ring", "--socket", &sock, "0", "1"]);
        assert!(r.is_ok());
        assert!(
            text.starts_with("rang peer 0 vector 1 from host peer"),
            "{text}"
        );
        let ev = endpoint::Endpoint::wait(&mut other, u64::MAX, Duration::from_secs(5)).unwrap();
        assert_eq!(ev.mask, 0b10);
        let (r, _) = run_cmd(&["ring", "--socket", &sock, "0", "2"]);
        assert!(matches!(r, Err(Error::Io(_))), "no vector 2");
        let (r, text) = run_cmd(&["wait", "--socket", &sock, "--timeout", "50"]);
        assert!(
            matches!(r, Err(Error::Failed(_))) && text.is_empty(),
            "nothing arrives: exit 1"
        );
        let (r, _) = run_cmd(&["wait", "--socket", &sock, "--nonblock"]);
        assert!(
            matches!(r, Err(Error::Failed(ref m)) if m.starts_with("EAGAIN")),
            "nothing pending: exit 1"
        );
    }
}
