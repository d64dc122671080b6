//! A small HTTP/1.1 file server for tests: listens on 127.0.0.1 (port 0) inside the test process, serves in-memory
//! files, honours `Range: bytes=N-` / `bytes=N-M`, records every request, and misbehaves on demand.
//!
//! One request per connection (`Connection: close`), one thread per connection.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A misbehaviour for one response.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a short body.
    Status(u16),
    /// Send the normal headers (Content-Length of the full response), then only `n` bytes of the body, then close
    /// the connection: a connection dropped mid-body, or a truncated body.
    CloseAfter(usize),
    /// Accept the connection, read the request and close without answering.
    Hangup,
    /// Send the headers and `n` bytes of the body, then go silent for `pause` before closing (a stalled transfer).
    Stall { after: usize, pause: Duration },
    /// Send the whole announced body, then `n` more bytes that no header announced (a server whose size is wrong).
    Overlong(usize),
}

/// What the server saw and did for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub path: String,
    /// The request's Range header, verbatim.
    pub range: Option<String>,
    /// The request's If-Range header, verbatim.
    pub if_range: Option<String>,
    pub status: u16,
    /// Body bytes the server sends (logged before sending, so a client that has its answer finds it here).
    pub body_sent: u64,
}

#[derive(Default)]
struct Route {
    body: Vec<u8>,
    /// Applied to successive requests, then normal service resumes.
    faults: VecDeque<Fault>,
    /// Applied to every request once `faults` is empty.
    always: Option<Fault>,
    /// Answer ranged requests with 200 and the whole file.
    ignore_range: bool,
    /// Serve at most this many bytes per ranged (206) response.
    range_chunk: Option<usize>,
    /// Sent as `ETag` with every 200 and 206 response.
    etag: Option<String>,
    /// Sent as `Last-Modified` with every 200 and 206 response.
    last_modified: Option<String>,
    /// Serve the range even when the request's `If-Range` names another version (a server that ignores `If-Range`).
    ignore_if_range: bool,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    log: Vec<Logged>,
}

pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept_thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || handle(stream, &state));
                }
            })
        };
        TestServer {
            addr,
            state,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    /// `http://127.0.0.1:PORT/` + `path` (no leading slash needed).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The base URL of the server, with a trailing slash.
    pub fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn add_file(&self, path: &str, body: Vec<u8>) {
        self.route(path, |r| r.body = body);
    }

    /// Queue faults for the next requests to `path`.
    pub fn push_faults(&self, path: &str, faults: impl IntoIterator<Item = Fault>) {
        self.route(path, |r| r.faults.extend(faults));
    }

    /// A fault for every request to `path` (after the queued ones).
    pub fn always(&self, path: &str, fault: Option<Fault>) {
        self.route(path, |r| r.always = fault);
    }

    pub fn ignore_range(&self, path: &str, ignore: bool) {
        self.route(path, |r| r.ignore_range = ignore);
    }

    pub fn range_chunk(&self, path: &str, chunk: Option<usize>) {
        self.route(path, |r| r.range_chunk = chunk);
    }

    /// The validators the server sends for `path` (`ETag`, `Last-Modified`), and against which it checks `If-Range`.
    pub fn validators(&self, path: &str, etag: Option<&str>, last_modified: Option<&str>) {
        self.route(path, |r| {
            r.etag = etag.map(str::to_string);
            r.last_modified = last_modified.map(str::to_string);
        });
    }

    pub fn ignore_if_range(&self, path: &str, ignore: bool) {
        self.route(path, |r| r.ignore_if_range = ignore);
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Requests so far for `path`.
    pub fn log_for(&self, path: &str) -> Vec<Logged> {
        let key = normalise(path);
        self.log().into_iter().filter(|l| l.path == key).collect()
    }

    fn route(&self, path: &str, f: impl FnOnce(&mut Route)) {
        let mut state = self.state.lock().unwrap();
        f(state.routes.entry(normalise(path)).or_default());
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn normalise(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

/// Parses `bytes=N-` or `bytes=N-M` into (first, last inclusive, clipped to `len`).
fn parse_range(value: &str, len: usize) -> Option<(usize, Option<usize>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let first: usize = a.trim().parse().ok()?;
    let last = match b.trim() {
        "" => None,
        b => Some(b.parse::<usize>().ok()?.min(len.saturating_sub(1))),
    };
    Some((first, last))
}

fn handle(stream: TcpStream, state: &Mutex<State>) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return; // the Drop wake-up, or a client that gave up
    }
    let mut range = None;
    let mut if_range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            } else if name.trim().eq_ignore_ascii_case("if-range") {
                if_range = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let request = Request {
        path,
        range,
        if_range,
    };

    // Decide the response under the lock, write it outside.
    let (fault, body, status, headers, span) = {
        let mut st = state.lock().unwrap();
        let Some(route) = st.routes.get_mut(&request.path) else {
            drop(st);
            respond_simple(stream, state, request, 404);
            return;
        };
        let fault = route.faults.pop_front().or_else(|| route.always.clone());
        let body = route.body.clone();
        let len = body.len();
        // RFC 9110 §13.1.5: a range is served only if `If-Range` (when sent) names the current version.
        let same_version = request.if_range.as_deref().is_none_or(|v| {
            route.ignore_if_range
                || route.etag.as_deref() == Some(v)
                || route.last_modified.as_deref() == Some(v)
        });
        let ranged = if route.ignore_range || method != "GET" || !same_version {
            None
        } else {
            request.range.as_deref().and_then(|r| parse_range(r, len))
        };
        let mut validators = String::new();
        if let Some(etag) = &route.etag {
            validators += &format!("ETag: {etag}\r\n");
        }
        if let Some(date) = &route.last_modified {
            validators += &format!("Last-Modified: {date}\r\n");
        }
        match ranged {
            Some((first, _)) if first >= len => {
                drop(st);
                let mut stream = stream;
                let head = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                );
                log(state, request, 416, 0);
                let _ = stream.write_all(head.as_bytes());
                return;
            }
            Some((first, last)) => {
                let mut last = last.unwrap_or(len - 1);
                if let Some(chunk) = route.range_chunk {
                    last = last.min(first + chunk - 1);
                }
                let headers = format!(
                    "Content-Range: bytes {first}-{last}/{len}\r\nContent-Length: {}\r\n{validators}",
                    last + 1 - first
                );
                (fault, body, 206, headers, first..last + 1)
            }
            None => {
                let headers =
                    format!("Content-Length: {len}\r\nAccept-Ranges: bytes\r\n{validators}");
                (fault, body, 200, headers, 0..len)
            }
        }
    };
    let mut stream = stream;
    match fault {
        Some(Fault::Status(code)) => {
            drop(reader);
            respond_simple(stream, state, request, code);
        }
        Some(Fault::Hangup) => {
            log(state, request, 0, 0);
        }
        other => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\n{headers}Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                if status == 200 { "OK" } else { "Partial Content" }
            );
            let payload = &body[span];
            let (limit, pause) = match other {
                Some(Fault::CloseAfter(n)) => (n.min(payload.len()), None),
                Some(Fault::Stall { after, pause }) => (after.min(payload.len()), Some(pause)),
                _ => (payload.len(), None),
            };
            log(state, request, status, limit as u64);
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let _ = stream.write_all(&payload[..limit]);
            if let Some(Fault::Overlong(n)) = other {
                let _ = stream.write_all(&vec![0xAB; n]);
            }
            let _ = stream.flush();
            if let Some(pause) = pause {
                std::thread::sleep(pause);
            }
            // Dropping the stream closes the connection, short of the announced length where a fault said so.
        }
    }
}

/// The parts of a request that the log keeps.
struct Request {
    path: String,
    range: Option<String>,
    if_range: Option<String>,
}

fn respond_simple(mut stream: TcpStream, state: &Mutex<State>, request: Request, code: u16) {
    let body = format!("status {code}\n");
    let head = format!(
        "HTTP/1.1 {code} Test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    log(state, request, code, 0);
    let _ = stream.write_all(head.as_bytes());
}

fn log(state: &Mutex<State>, request: Request, status: u16, body_sent: u64) {
    state.lock().unwrap().log.push(Logged {
        path: request.path,
        range: request.range,
        if_range: request.if_range,
        status,
        body_sent,
    });
}
