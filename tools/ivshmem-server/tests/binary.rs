// SPDX-License-Identifier: GPL-2.0
//! The real `ivshmem-server` binary, in the foreground and as a daemon.

mod common;

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::TempDir;
use ivshmem_peer::Peer;

const BIN: &str = env!("CARGO_BIN_EXE_ivshmem-server");

/// Polls `cond` every 20 ms for up to 10 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}

fn sigterm(pid: i32) {
    // SAFETY: kill takes no pointers.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

/// Kills the child if a test fails half way.
struct Reaper(Child);

impl Reaper {
    fn wait(&mut self) -> ExitStatus {
        let mut status = None;
        eventually("the server to exit", || {
            status = self.0.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn foreground_server_serves_and_exits_cleanly_on_sigterm() {
    let dir = TempDir::new("bin-fg");
    let (sock, pidfile) = (dir.0.join("sock"), dir.0.join("pid"));
    let child = Command::new(BIN)
        .args(["-F", "-v", "-n", "2", "-l", "64K"])
        .arg("-S")
        .arg(&sock)
        .arg("-m")
        .arg(&dir.0)
        .arg("-p")
        .arg(&pidfile)
        .spawn()
        .unwrap();
    let mut child = Reaper(child);
    // The socket is bound before the pid file is written.
    eventually("the socket and the pid file", || {
        sock.exists() && pidfile.exists()
    });
    assert_eq!(read_pid(&pidfile), i32::try_from(child.0.id()).unwrap());

    let peer = Peer::connect(&sock).unwrap();
    assert_eq!((peer.vectors(), peer.shm().len()), (2, 65536));
    peer.ring(peer.id(), 1).unwrap();
    assert_eq!(peer.wait(1, Some(Duration::from_secs(5))).unwrap(), 1);

    sigterm(i32::try_from(child.0.id()).unwrap());
    let status = child.wait();
    assert!(status.success(), "{status}");
    assert!(!sock.exists(), "socket left behind");
    assert!(!pidfile.exists(), "pid file left behind");
}

#[test]
fn daemon_detaches_and_cleans_up() {
    let dir = TempDir::new("bin-daemon");
    let (sock, pidfile) = (dir.0.join("sock"), dir.0.join("pid"));
    // The parent exits at once; the pid file already names the daemon.
    let status = Command::new(BIN)
        .arg("-S")
        .arg(&sock)
        .arg("-m")
        .arg(&dir.0)
        .arg("-p")
        .arg(&pidfile)
        .status()
        .unwrap();
    assert!(status.success());
    let pid = read_pid(&pidfile);
    eventually("the socket", || sock.exists());
    let peer = Peer::connect(&sock).unwrap();
    assert_eq!(peer.vectors(), 1);
    sigterm(pid);
    eventually("the daemon to remove its socket and pid file", || {
        !sock.exists() && !pidfile.exists()
    });
}

#[test]
fn startup_errors_exit_with_status_1_and_usage_errors_with_2() {
    let dir = TempDir::new("bin-errors");
    let out = Command::new(BIN)
        .args(["-F", "-m", "/nonexistent/dir", "-S"])
        .arg(dir.0.join("sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/dir"), "{stderr}");
    assert!(!dir.0.join("sock").exists());

    let out = Command::new(BIN).args(["-l", "lots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid size 'lots'"));

    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("ivshmem-doorbell,chardev=ivs,vectors=2") && help.contains("Exit status")
    );
}
