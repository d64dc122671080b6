//! HTTP downloads that end with a complete, verified file or a clear error, never a silently truncated one.
//!
//! The reference fetched its datasets and pretrained models with `wget` from one base URL, with no checksums and no
//! retries (docs/spec/progan_hp.md §4.6, §6, quirk §13.15). Here a download:
//! - writes into `<dest>.partial`, a stable name, so an interrupted run (crash, Ctrl-C, lost connection) is resumed
//!   by the next one with an HTTP `Range: bytes=N-` request;
//! - accepts `206 Partial Content` (appends) or `200 OK` (the server ignored the range: starts again from byte 0);
//! - retries connection failures, stalls (read timeout), truncated bodies, 408, 429 and 5xx with exponential
//!   backoff; the retry budget counts consecutive attempts that added nothing to the file, so a long download over a
//!   flaky link keeps going while it makes progress, and a dead server is given up on after `retries` attempts;
//! - gives up at once on other statuses (404, 403, …) with an error naming the URL;
//! - never splices two versions of a file: the server's validator (`ETag`, else `Last-Modified`) is kept beside the
//!   partial file in `<dest>.partial.validator`; a resume sends it as `If-Range`, so a server whose file changed
//!   answers `200` with the new file and the download starts over; a `206` whose validator differs from the kept one
//!   (a server that ignores `If-Range`) is discarded and the download starts over too;
//! - checks the final size against the server's `Content-Length` / `Content-Range` total and the expected size, and
//!   the SHA-256 when one is known; a mismatch deletes the partial file;
//! - fsyncs the complete file and renames it to `dest` only when complete and verified.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the reference's datasets and pretrained models live (docs/spec/progan_hp.md §6).
pub const REFERENCE_BASE_URL: &str = "http://efrosgans.eecs.berkeley.edu/HessianPenalty/resources/";

/// Environment variable that points downloads at a mirror of the reference's `resources/` tree.
pub const BASE_URL_ENV: &str = "HESSIAN_GAN_BASE_URL";

/// The base URL to download from: an explicit value (the CLI's `--base-url`) wins, then `$HESSIAN_GAN_BASE_URL`,
/// then the reference's server. The result ends with `/`.
pub fn resolve_base_url(explicit: Option<&str>) -> Result<String> {
    let env = std::env::var(BASE_URL_ENV).ok();
    resolve_base_url_from(explicit, env.as_deref())
}

/// [`resolve_base_url`] with the environment variable's value passed in (testable without touching the process
/// environment). Empty values count as unset.
pub fn resolve_base_url_from(explicit: Option<&str>, env: Option<&str>) -> Result<String> {
    fn nonempty(v: Option<&str>) -> Option<&str> {
        v.map(str::trim).filter(|v| !v.is_empty())
    }
    let (value, source) = if let Some(v) = nonempty(explicit) {
        (v, "--base-url")
    } else if let Some(v) = nonempty(env) {
        (v, BASE_URL_ENV)
    } else {
        return Ok(REFERENCE_BASE_URL.to_string());
    };
    let parsed = reqwest::Url::parse(value).map_err(|e| {
        anyhow::anyhow!(
            "invalid base URL {value:?} from {source}: {e}; expected e.g. {REFERENCE_BASE_URL}"
        )
    })?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some(),
        "invalid base URL {value:?} from {source}: expected an http:// or https:// URL such as {REFERENCE_BASE_URL}"
    );
    let mut url = value.to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

/// `base` joined with a server-relative path (`datasets/clevr_simple/clevr_simple-r02.tfrecords`).
pub fn join_url(base: &str, relative: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        relative.trim_start_matches('/')
    )
}

/// The stable name a download is written to before it is complete: `<dest>.partial`.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "download".into());
    name.push(".partial");
    dest.with_file_name(name)
}

/// Where the server's validator for the bytes in `<dest>.partial` is kept: `<dest>.partial.validator`.
pub fn validator_path(dest: &Path) -> PathBuf {
    let mut name = partial_path(dest).into_os_string();
    name.push(".validator");
    PathBuf::from(name)
}

/// What identifies one version of a file on the server (RFC 9110 §8.8): the validators of the response that started
/// the partial file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validator {
    fn from_headers(headers: &HeaderMap) -> Validator {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Validator {
            etag: text(ETAG),
            last_modified: text(LAST_MODIFIED),
        }
    }

    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    /// The `If-Range` value: a strong ETag, else the date (a weak ETag may not be used there, RFC 9110 §13.1.5).
    fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(etag) if !etag.starts_with("W/") => Some(etag),
            _ => self.last_modified.as_deref(),
        }
    }

    /// Why a response `now` is not the version this one describes, if it provably is not: the ETags differ, or
    /// (without ETags on both sides) the dates differ.
    fn changed(&self, now: &Validator) -> Option<String> {
        match (&self.etag, &now.etag) {
            (Some(a), Some(b)) if a != b => Some(format!("ETag {a} became {b}")),
            (Some(_), Some(_)) => None,
            _ => match (&self.last_modified, &now.last_modified) {
                (Some(a), Some(b)) if a != b => Some(format!("Last-Modified {a} became {b}")),
                _ => None,
            },
        }
    }
}

/// The validator kept for a partial file of `have` bytes; none for an empty one (a leftover from a kill between
/// truncating the partial file and writing the new validator) or an unreadable one (then `If-Range` is not sent and
/// the size and SHA-256 checks remain).
fn load_validator(dest: &Path, have: u64) -> Option<Validator> {
    let path = validator_path(dest);
    if have == 0 {
        let _ = std::fs::remove_file(&path);
        return None;
    }
    let text = std::fs::read(&path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Keeps (or, for a response without validators, forgets) the validator of the bytes about to be written.
fn store_validator(dest: &Path, validator: &Validator) -> Result<()> {
    let path = validator_path(dest);
    if validator.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(anyhow::Error::new(e).context(format!("cannot remove {}", path.display())))
            }
            _ => Ok(()),
        };
    }
    let json = serde_json::to_vec(validator).context("cannot encode the download validator")?;
    crate::io::fs::write_bytes_atomic(&path, &json)
}

/// How to download one file.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Expected SHA-256 (hex, any case); checked when given.
    pub sha256: Option<String>,
    /// Expected size in bytes; checked when given (also against what the server announces, before transferring).
    pub size: Option<u64>,
    /// Consecutive failed attempts without progress that are retried before giving up (0 = one attempt only).
    pub retries: u32,
    /// First retry delay; doubled after each further failure without progress.
    pub backoff: Duration,
    /// Upper bound of the retry delay.
    pub max_backoff: Duration,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for waiting for the response headers and for each read of the body (a stalled transfer).
    pub read_timeout: Duration,
    /// −1 hides the progress bar and retry notes (`--quiet`).
    /// Progress bar label; the file name when `None`.
    pub label: Option<String>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            sha256: None,
            size: None,
            retries: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            label: None,
        }
    }
}

/// What a finished download did.
#[derive(Clone, Debug, Serialize)]
pub struct DownloadReport {
    pub url: String,
    pub path: PathBuf,
    /// Final size in bytes.
    pub size: u64,
    /// SHA-256 of the final file (lowercase hex), whether or not one was expected.
    pub sha256: String,
    /// Bytes already in `<dest>.partial` when this call started (a resumed download).
    pub resumed_from: u64,
    /// Body bytes received over the network by this call (including any that a restart from 0 discarded).
    pub bytes_transferred: u64,
    /// HTTP requests made.
    pub attempts: u32,
    pub seconds: f64,
}

/// Download failures a caller may want to tell apart (reach them with `err.downcast_ref::<DownloadError>()`).
#[derive(Debug)]
pub enum DownloadError {
    /// The server answered with a status that retrying will not fix (404, 403, 401, …).
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    /// Every attempt failed to connect, or the retries ran out on connection losses, stalls or 5xx.
    GaveUp {
        url: String,
        dest: PathBuf,
        attempts: u32,
        last_error: String,
        /// No attempt ever received an HTTP response (host unreachable, DNS failure, connection refused).
        unreachable: bool,
        /// Bytes kept in `<dest>.partial` for a later resume.
        kept: u64,
    },
    /// The data arrived but its size or SHA-256 is wrong; the partial file has been deleted.
    Integrity {
        url: String,
        dest: PathBuf,
        detail: String,
    },
    /// Another process holds the lock on `<dest>.partial`.
    Busy { dest: PathBuf },
}

impl std::fmt::Display for DownloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownloadError::Status {
                url,
                status,
                reason,
            } => write!(
                f,
                "{url}: the server answered HTTP {status} {reason}; check the name, or the base URL \
                 (--base-url / {BASE_URL_ENV}) if you use a mirror"
            ),
            DownloadError::GaveUp {
                url,
                dest,
                attempts,
                last_error,
                unreachable: true,
                ..
            } => write!(
                f,
                "cannot reach {url} ({last_error}; {attempts} attempt(s)); if this machine is offline, fetch that \
                 URL elsewhere and place the file at {}, or set --base-url / {BASE_URL_ENV} to a reachable mirror",
                dest.display()
            ),
            DownloadError::GaveUp {
                url,
                dest,
                attempts,
                last_error,
                kept,
                ..
            } => {
                write!(f, "gave up on {url} after {attempts} attempt(s): {last_error}; ")?;
                if *kept > 0 {
                    write!(
                        f,
                        "{kept} bytes are kept in {} and the next run resumes them, ",
                        partial_path(dest).display()
                    )?;
                }
                write!(
                    f,
                    "or place the complete file at {} by hand",
                    dest.display()
                )
            }
            DownloadError::Integrity { url, dest, detail } => write!(
                f,
                "{url}: {detail}; the partial download was deleted and {} was not written (run again to \
                 re-download, or check the base URL / mirror)",
                dest.display()
            ),
            DownloadError::Busy { dest } => write!(
                f,
                "{} is being downloaded by another process (lock on {}); wait for it or stop it",
                dest.display(),
                partial_path(dest).display()
            ),
        }
    }
}

impl std::error::Error for DownloadError {}

/// Downloads `url` to `dest` as described in the module documentation. `dest`'s directory is created; an existing
/// `dest` is replaced only once the new file is complete and verified.
pub fn download(url: &str, dest: &Path, opts: &DownloadOptions) -> Result<DownloadReport> {
    let start = Instant::now();
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    let partial = partial_path(dest);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&partial)
        .with_context(|| format!("cannot open {}", partial.display()))?;
    // Two processes appending to one partial file would corrupt it; the lock dies with the handle (or the process).
    if file.try_lock().is_err() {
        return Err(DownloadError::Busy {
            dest: dest.to_path_buf(),
        }
        .into());
    }
    let resumed_from = file_len(&file, &partial)?;
    let mut builder = Client::builder()
        .connect_timeout(opts.connect_timeout)
        // In the blocking client this bounds the wait for the headers and every single body read: a stall detector.
        .timeout(opts.read_timeout);
    if is_loopback(url) {
        // A proxy from the environment must not intercept a server on this machine (a local mirror, the tests).
        builder = builder.no_proxy();
    }
    let client = builder
        .build()
        .context("cannot initialise the HTTP client")?;
    let bar = progress_bar(dest, opts);

    let mut state = Transfer {
        attempts: 0,
        transferred: 0,
        any_response: false,
        validator: load_validator(dest, resumed_from),
    };
    let mut best = resumed_from;
    let mut failures = 0u32;
    let total = loop {
        let have = file_len(&file, &partial)?;
        if let Some(size) = opts.size {
            if have == size {
                break Some(size);
            }
            if have > size {
                // A stale partial file from another version of the resource: start over.
                start_over(&mut file, dest, &mut state)
                    .with_context(|| format!("cannot truncate {}", partial.display()))?;
                continue;
            }
        }
        state.attempts += 1;
        let job = Job {
            client: &client,
            url,
            dest,
            partial: &partial,
            opts,
            bar: &bar,
        };
        match job.attempt(&mut file, have, &mut state) {
            Ok(Progress::Done { total }) => break total,
            Ok(Progress::More) => continue,
            Err(Failure::Fatal(err)) => {
                bar.finish_and_clear();
                let integrity = matches!(
                    err.downcast_ref::<DownloadError>(),
                    Some(DownloadError::Integrity { .. })
                );
                let empty = file_len(&file, &partial)? == 0;
                drop(file);
                if integrity || empty {
                    let _ = std::fs::remove_file(&partial);
                    let _ = std::fs::remove_file(validator_path(dest));
                }
                return Err(err);
            }
            Err(Failure::Retry(cause)) => {
                let now = file_len(&file, &partial)?;
                if now > best {
                    best = now;
                    failures = 0;
                } else {
                    failures += 1;
                }
                if failures > opts.retries {
                    bar.finish_and_clear();
                    let kept = now;
                    drop(file);
                    if kept == 0 {
                        let _ = std::fs::remove_file(&partial);
                        let _ = std::fs::remove_file(validator_path(dest));
                    }
                    return Err(DownloadError::GaveUp {
                        url: url.to_string(),
                        dest: dest.to_path_buf(),
                        attempts: state.attempts,
                        last_error: cause,
                        unreachable: !state.any_response,
                        kept,
                    }
                    .into());
                }
                let delay = opts
                    .backoff
                    .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
                    .min(opts.max_backoff);
                log::warn!(
                    "{url}: {cause}; retrying in {:.1} s ({}/{} without progress)",
                    delay.as_secs_f64(),
                    failures,
                    opts.retries
                );
                std::thread::sleep(delay);
            }
        }
    };
    bar.finish_and_clear();

    let integrity = |detail: String| -> anyhow::Error {
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(validator_path(dest));
        DownloadError::Integrity {
            url: url.to_string(),
            dest: dest.to_path_buf(),
            detail,
        }
        .into()
    };
    let size = file_len(&file, &partial)?;
    let sha256 =
        sha256_reader(&mut file).with_context(|| format!("cannot read {}", partial.display()))?;
    // An ENOSPC or EIO that the page cache deferred surfaces here, before the file takes its final name.
    file.sync_all()
        .with_context(|| format!("cannot flush {} to the disk", partial.display()))?;
    drop(file);
    if let Some(total) = total.filter(|&t| t != size) {
        return Err(integrity(format!(
            "got {size} bytes but the server announced {total}"
        )));
    }
    if let Some(expected) = opts.size.filter(|&s| s != size) {
        return Err(integrity(format!(
            "got {size} bytes but {expected} were expected"
        )));
    }
    if let Some(expected) = &opts.sha256 {
        if !expected.trim().eq_ignore_ascii_case(&sha256) {
            return Err(integrity(format!(
                "SHA-256 mismatch: expected {}, got {sha256}",
                expected.trim()
            )));
        }
    }
    crate::io::fs::rename_durably(&partial, dest)?;
    let _ = std::fs::remove_file(validator_path(dest));
    Ok(DownloadReport {
        url: url.to_string(),
        path: dest.to_path_buf(),
        size,
        sha256,
        resumed_from,
        bytes_transferred: state.transferred,
        attempts: state.attempts,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `dest` if it is already there (and matches the expected size / SHA-256 when known), otherwise [`download`]s it.
/// Returns the report of the download, or `None` when nothing was fetched. A present file that fails the check is an
/// error, never silently replaced: it may have been placed by hand.
pub fn ensure_file(
    url: &str,
    dest: &Path,
    opts: &DownloadOptions,
) -> Result<Option<DownloadReport>> {
    if !dest.exists() {
        return download(url, dest, opts).map(Some);
    }
    let mut file = File::open(dest).with_context(|| format!("cannot open {}", dest.display()))?;
    let size = file_len(&file, dest)?;
    if let Some(expected) = opts.size {
        anyhow::ensure!(
            size == expected,
            "{} has {size} bytes but {expected} are expected ({url}); delete it to download it again",
            dest.display()
        );
    }
    if let Some(expected) = &opts.sha256 {
        let got =
            sha256_reader(&mut file).with_context(|| format!("cannot read {}", dest.display()))?;
        anyhow::ensure!(
            expected.trim().eq_ignore_ascii_case(&got),
            "{} has SHA-256 {got} but {} is expected ({url}); delete it to download it again",
            dest.display(),
            expected.trim()
        );
    }
    Ok(None)
}

fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    sha256_reader(&mut file).with_context(|| format!("cannot read {}", path.display()))
}

fn sha256_reader(file: &mut File) -> std::io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    Ok(file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

struct Transfer {
    attempts: u32,
    transferred: u64,
    /// Some attempt got an HTTP response: the host is reachable.
    any_response: bool,
    /// The version of the file whose bytes are in the partial file, when the server named it.
    validator: Option<Validator>,
}

/// Empties the partial file and forgets its validator: the next request fetches the whole file.
fn start_over(file: &mut File, dest: &Path, state: &mut Transfer) -> std::io::Result<()> {
    file.set_len(0)?;
    state.validator = None;
    match std::fs::remove_file(validator_path(dest)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

enum Progress {
    /// The file is complete; `total` is the size the server announced, when it did.
    Done { total: Option<u64> },
    /// The server sent a shorter range than asked for: ask for the rest.
    More,
}

enum Failure {
    /// Worth another attempt (the partial file keeps what arrived).
    Retry(String),
    Fatal(anyhow::Error),
}

/// What every attempt of one download shares.
struct Job<'a> {
    client: &'a Client,
    url: &'a str,
    dest: &'a Path,
    partial: &'a Path,
    opts: &'a DownloadOptions,
    bar: &'a ProgressBar,
}

impl Job<'_> {
    /// One HTTP request: continue the partial file from `have` bytes.
    fn attempt(
        &self,
        file: &mut File,
        have: u64,
        state: &mut Transfer,
    ) -> Result<Progress, Failure> {
        let Job {
            client,
            url,
            dest,
            partial,
            opts,
            bar,
        } = *self;
        let mut request = client.get(url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
            // The range is served only if the file is still the version we have the start of; otherwise a 200 with
            // the new file comes back and the download starts over.
            if let Some(v) = state.validator.as_ref().and_then(Validator::if_range) {
                request = request.header(IF_RANGE, v);
            }
        }
        let mut response = request
            .send()
            .map_err(|e| Failure::Retry(crate::io::log::error_line(&e)))?;
        state.any_response = true;
        let status = response.status().as_u16();
        let io_fatal = |e: std::io::Error| {
            Failure::Fatal(
                anyhow::Error::new(e).context(format!("cannot write {}", partial.display())),
            )
        };
        let integrity = |detail: String| {
            Failure::Fatal(
                DownloadError::Integrity {
                    url: url.to_string(),
                    dest: dest.to_path_buf(),
                    detail,
                }
                .into(),
            )
        };
        let validator = Validator::from_headers(response.headers());
        let check_announced = |total: u64| match opts.size {
            Some(expected) if expected != total => Err(integrity(format!(
                "the server announces {total} bytes but {expected} are expected"
            ))),
            _ => Ok(()),
        };
        // (first byte of this body, expected body length, total file size)
        let (start, body_len, total) = match status {
            200 => {
                // A full response, also when the server ignored our Range header: start over.
                let total = response.content_length();
                if let Some(total) = total {
                    check_announced(total)?;
                }
                file.set_len(0).map_err(io_fatal)?;
                // The validator is on the disk before the first byte of the version it names.
                store_validator(dest, &validator).map_err(Failure::Fatal)?;
                state.validator = Some(validator);
                (0, total, total)
            }
            206 => {
                let range = content_range(&response).ok_or_else(|| {
                    Failure::Retry("206 response without a usable Content-Range".to_string())
                })?;
                let Some((first, last)) = range.span else {
                    return Err(Failure::Retry(
                        "206 response without a byte range".to_string(),
                    ));
                };
                if first != have || last < first {
                    // Not the bytes we asked for: do not splice them in; start over with a full request.
                    start_over(file, dest, state).map_err(io_fatal)?;
                    return Err(Failure::Retry(format!(
                        "asked for bytes from {have}, got {first}-{last}; restarting from 0"
                    )));
                }
                if let Some(change) = state.validator.as_ref().and_then(|v| v.changed(&validator)) {
                    // The server ignored If-Range: these bytes belong to another version of the file.
                    start_over(file, dest, state).map_err(io_fatal)?;
                    return Err(Failure::Retry(format!(
                        "the file changed on the server ({change}); restarting from 0"
                    )));
                }
                if let Some(total) = range.total {
                    check_announced(total)?;
                }
                let len = last - first + 1;
                (
                    first,
                    Some(response.content_length().unwrap_or(len)),
                    range.total,
                )
            }
            416 if have > 0 => {
                // Nothing after `have`: the partial file may already be complete (an earlier run was stopped between
                // the last byte and the rename).
                match content_range(&response).and_then(|r| r.total) {
                    Some(total) if total == have => {
                        return Ok(Progress::Done { total: Some(total) })
                    }
                    _ => {
                        start_over(file, dest, state).map_err(io_fatal)?;
                        return Err(Failure::Retry(format!(
                            "the server refused the range from byte {have}; restarting from 0"
                        )));
                    }
                }
            }
            408 | 429 | 500..=599 => {
                return Err(Failure::Retry(format!(
                    "HTTP {status} {}",
                    response.status().canonical_reason().unwrap_or("")
                )))
            }
            _ => {
                return Err(Failure::Fatal(
                    DownloadError::Status {
                        url: url.to_string(),
                        status,
                        reason: response
                            .status()
                            .canonical_reason()
                            .unwrap_or("")
                            .to_string(),
                    }
                    .into(),
                ))
            }
        };

        match total {
            Some(total) => {
                bar.set_length(total);
                bar.set_style(bar_style(true));
            }
            None => bar.set_style(bar_style(false)),
        }
        bar.set_position(start);
        bar.reset_eta();
        file.seek(SeekFrom::Start(start)).map_err(io_fatal)?;
        let mut out = BufWriter::with_capacity(1 << 20, &mut *file);
        let received = copy_body(&mut response, &mut out, bar, state);
        out.flush().map_err(io_fatal)?;
        drop(out);
        let got = match received {
            Ok(got) => got,
            Err(BodyError::Write(e)) => return Err(io_fatal(e)),
            Err(BodyError::Read { got, error }) => {
                return Err(Failure::Retry(format!(
                    "connection lost after {got} bytes of the response: {error}"
                )))
            }
        };
        if let Some(expected) = body_len {
            if got < expected {
                return Err(Failure::Retry(format!(
                    "the response ended after {got} of {expected} bytes"
                )));
            }
        }
        let end = start + got;
        match total {
            Some(total) if end < total => Ok(Progress::More),
            Some(total) => Ok(Progress::Done { total: Some(total) }),
            // No announced length (a close-delimited body): only the expected size or SHA-256 can vouch for it.
            None => Ok(Progress::Done { total: None }),
        }
    }
}

enum BodyError {
    Read { got: u64, error: String },
    Write(std::io::Error),
}

fn copy_body(
    response: &mut Response,
    out: &mut impl Write,
    bar: &ProgressBar,
    state: &mut Transfer,
) -> Result<u64, BodyError> {
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BodyError::Read {
                    got,
                    error: crate::io::log::error_line(&e),
                })
            }
        };
        out.write_all(&buf[..n]).map_err(BodyError::Write)?;
        got += n as u64;
        state.transferred += n as u64;
        bar.inc(n as u64);
    }
}

struct ContentRange {
    span: Option<(u64, u64)>,
    total: Option<u64>,
}

/// `Content-Range: bytes first-last/total`, `bytes first-last/*` or `bytes */total`.
fn content_range(response: &Response) -> Option<ContentRange> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    parse_content_range(value)
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let span = match span.trim() {
        "*" => None,
        s => {
            let (a, b) = s.split_once('-')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        }
    };
    Some(ContentRange { span, total })
}

fn bar_style(known_length: bool) -> ProgressStyle {
    let template = if known_length {
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}"
    } else {
        "{prefix} {spinner} {bytes} {binary_bytes_per_sec}"
    };
    ProgressStyle::with_template(template)
        .expect("static progress template")
        .progress_chars("=> ")
}

fn progress_bar(dest: &Path, opts: &DownloadOptions) -> ProgressBar {
    let bar = crate::io::progress::add(ProgressBar::no_length());
    let label = opts.label.clone().unwrap_or_else(|| {
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    bar.set_prefix(label);
    bar.set_style(bar_style(false));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_precedence_and_validation() {
        assert_eq!(
            resolve_base_url_from(None, None).unwrap(),
            REFERENCE_BASE_URL
        );
        assert_eq!(
            resolve_base_url_from(None, Some("  ")).unwrap(),
            REFERENCE_BASE_URL
        );
        assert_eq!(
            resolve_base_url_from(None, Some("https://mirror.example/hp")).unwrap(),
            "https://mirror.example/hp/"
        );
        assert_eq!(
            resolve_base_url_from(
                Some("http://127.0.0.1:8080/r/"),
                Some("https://mirror.example/hp")
            )
            .unwrap(),
            "http://127.0.0.1:8080/r/"
        );
        let err = resolve_base_url_from(Some("ftp://x/y"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--base-url") && err.contains("ftp://x/y"),
            "{err}"
        );
        let err = resolve_base_url_from(None, Some("not a url"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(BASE_URL_ENV), "{err}");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:8000/x"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback(REFERENCE_BASE_URL));
        assert!(!is_loopback("http://10.0.0.1/"));
    }

    #[test]
    fn urls_and_partial_names() {
        assert_eq!(
            join_url(REFERENCE_BASE_URL, "datasets/a/a-r02.tfrecords"),
            "http://efrosgans.eecs.berkeley.edu/HessianPenalty/resources/datasets/a/a-r02.tfrecords"
        );
        assert_eq!(join_url("http://h/x", "/y"), "http://h/x/y");
        assert_eq!(
            partial_path(Path::new("d/f.pkl")),
            PathBuf::from("d/f.pkl.partial")
        );
    }

    #[test]
    fn content_range_forms() {
        let r = parse_content_range("bytes 100-199/1000").unwrap();
        assert_eq!((r.span, r.total), (Some((100, 199)), Some(1000)));
        let r = parse_content_range("bytes 0-9/*").unwrap();
        assert_eq!((r.span, r.total), (Some((0, 9)), None));
        let r = parse_content_range("bytes */77").unwrap();
        assert_eq!((r.span, r.total), (None, Some(77)));
        assert!(parse_content_range("items 0-1/2").is_none());
        assert!(parse_content_range("bytes 5-x/9").is_none());
    }
}
