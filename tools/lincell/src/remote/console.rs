// SPDX-License-Identifier: GPL-2.0

//! virtio-console (one port, no MULTIPORT): queue 0 receiveq (to the
//! guest), queue 1 transmitq (from the guest). The bytes come from and go
//! to stdio or a UNIX stream socket, served by helper threads.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE;
use virtio_queue::{Reader, Writer};

use super::engine::{log, Chain, Device, Done};
use super::mem::Mem;

/// Input buffered from the outside before it is held back.
const INPUT_LIMIT: usize = 1 << 20;
/// Guest output kept while no socket client is connected.
const BACKLOG_LIMIT: usize = 64 << 10;
/// Largest transmit buffer accepted in one chain.
const MAX_TX: usize = 1 << 20;

/// Bytes from the outside on their way to the guest.
#[derive(Default)]
pub(crate) struct Input {
    buf: Mutex<VecDeque<u8>>,
    space: Condvar,
}

impl Input {
    fn lock(&self) -> MutexGuard<'_, VecDeque<u8>> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues bytes, waiting while too much is pending.
    pub(crate) fn push(&self, data: &[u8]) {
        let mut b = self.lock();
        while b.len() >= INPUT_LIMIT {
            b = self
                .space
                .wait_timeout(b, Duration::from_millis(100))
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        b.extend(data);
    }

    fn pending(&self) -> bool {
        !self.lock().is_empty()
    }
}

/// Where guest output goes.
pub(crate) type Output = Box<dyn FnMut(&[u8]) + Send>;

/// A virtio-console device.
pub(crate) struct Console {
    input: Arc<Input>,
    output: Output,
    what: String,
    verbose: bool,
}

/// Config: cols, rows (0: unknown), max_nr_ports, emerg_wr.
pub(crate) const CONFIG_LEN: usize = 12;

impl Console {
    /// A console fed by `input`, writing guest output to `output`.
    pub(crate) fn new(input: Arc<Input>, output: Output, what: String, verbose: bool) -> Self {
        Console {
            input,
            output,
            what,
            verbose,
        }
    }

    /// Stdin to the guest, guest output to stdout.
    pub(crate) fn stdio(verbose: bool) -> Self {
        let input = Arc::new(Input::default());
        let feed = Arc::clone(&input);
        thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => feed.push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        });
        let output: Output = Box::new(|data: &[u8]| {
            let mut out = io::stdout().lock();
            let _ = out.write_all(data).and_then(|()| out.flush());
        });
        Console::new(input, output, "stdio".into(), verbose)
    }

    /// A UNIX stream socket at `path` (a stale socket there is replaced),
    /// one client at a time.
    pub(crate) fn unix(path: &Path, verbose: bool) -> io::Result<Self> {
        use std::os::unix::fs::FileTypeExt;
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let input = Arc::new(Input::default());
        let client: Arc<Mutex<Client>> = Arc::default();
        let feed = Arc::clone(&input);
        let shared = Arc::clone(&client);
        let shown: PathBuf = path.to_path_buf();
        thread::spawn(move || serve_socket(&listener, &shown, &feed, &shared));
        let output: Output = Box::new(move |data: &[u8]| {
            let mut c = client.lock().unwrap_or_else(|e| e.into_inner());
            c.send(data);
        });
        Ok(Console::new(
            input,
            output,
            format!("unix:{}", path.display()),
            verbose,
        ))
    }
}

/// The connected socket client, or the backlog kept for the next one.
#[derive(Default)]
struct Client {
    stream: Option<UnixStream>,
    backlog: VecDeque<u8>,
}

impl Client {
    fn send(&mut self, data: &[u8]) {
        if let Some(s) = &mut self.stream {
            if s.write_all(data).is_ok() {
                return;
            }
            log(format_args!("console client stopped reading; disconnected"));
            let _ = s.shutdown(std::net::Shutdown::Both);
            self.stream = None;
        }
        self.backlog.extend(data);
        let excess = self.backlog.len().saturating_sub(BACKLOG_LIMIT);
        self.backlog.drain(..excess);
    }
}

/// Accepts clients one after the other and feeds what they send.
fn serve_socket(listener: &UnixListener, path: &Path, feed: &Input, client: &Mutex<Client>) {
    loop {
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                log(format_args!(
                    "console socket {}: accept: {e}",
                    path.display()
                ));
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Ok(writer) = stream.try_clone() else {
            continue;
        };
        let _ = writer.set_write_timeout(Some(Duration::from_secs(1)));
        {
            let mut c = client.lock().unwrap_or_else(|e| e.into_inner());
            let mut w = &writer;
            let backlog: Vec<u8> = c.backlog.drain(..).collect();
            let _ = w.write_all(&backlog);
            c.stream = Some(writer);
        }
        log(format_args!(
            "console client connected on {}",
            path.display()
        ));
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => feed.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        client.lock().unwrap_or_else(|e| e.into_inner()).stream = None;
        log(format_args!("console client left"));
    }
}

impl Device for Console {
    fn device_id(&self) -> u16 {
        // CAST: virtio device ids are small.
        VIRTIO_ID_CONSOLE as u16
    }

    fn features(&self) -> u64 {
        0
    }

    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; CONFIG_LEN];
        c[4..8].copy_from_slice(&1u32.to_le_bytes());
        c
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn can_take(&mut self, q: usize) -> bool {
        q != 0 || self.input.pending()
    }

    fn handle(&mut self, q: usize, chain: Chain<'_>, mem: &Mem) -> Done {
        let head = chain.head_index();
        if q == 0 {
            let mut w = match Writer::new(mem, chain) {
                Ok(w) => w,
                Err(e) => {
                    log(format_args!(
                        "console: rx chain {head}: bad buffers ({e}); dropped"
                    ));
                    return Done::default();
                }
            };
            let writable = u32::try_from(w.available_bytes()).unwrap_or(u32::MAX);
            let data: Vec<u8> = {
                let mut b = self.input.lock();
                let n = b.len().min(w.available_bytes());
                b.drain(..n).collect()
            };
            self.input.space.notify_all();
            let written = match w.write_all(&data) {
                Ok(()) => data.len(),
                Err(_) => w.bytes_written(),
            };
            if self.verbose {
                log(format_args!(
                    "console: {written} bytes to the guest (chain {head})"
                ));
            }
            return Done {
                written: u32::try_from(written).unwrap_or(0).min(writable),
                writable,
            };
        }
        // transmitq (and any other queue): read what the guest sent.
        let mut r = match Reader::new(mem, chain.clone()) {
            Ok(r) => r,
            Err(e) => {
                log(format_args!(
                    "console: tx chain {head}: bad buffers ({e}); dropped"
                ));
                return Done::default();
            }
        };
        let writable = Writer::new(mem, chain)
            .map(|w| u32::try_from(w.available_bytes()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let n = r.available_bytes();
        if n > MAX_TX {
            log(format_args!(
                "console: tx chain {head} of {n} bytes too large; dropped"
            ));
            return Done {
                written: 0,
                writable,
            };
        }
        let mut data = vec![0u8; n];
        if r.read_exact(&mut data).is_ok() {
            (self.output)(&data);
        }
        if self.verbose {
            log(format_args!(
                "console: {n} bytes from the guest (chain {head})"
            ));
        }
        Done {
            written: 0,
            writable,
        }
    }

    fn summary(&self) -> String {
        format!("virtio-console on {}", self.what)
    }
}
