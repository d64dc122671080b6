//! The logging facade: the `log` crate's macros everywhere, one logger installed here.
//!
//! The CLI calls [`init`] once with the level `-q`/`-v` ask for; library code only uses `log::{error, warn, info,
//! debug}`. Records go to stderr through [`crate::io::progress::suspend`], so a line never tears a progress bar.
//! A training run also tees its records into `log.txt` with [`tee_to`]: the file gets every record at `info` and
//! above whatever the console shows (as the reference's log did), and `debug` too under `-v`. The file is
//! attached to the calling thread only, so parallel runs in one process (the tests) keep their logs apart.

use anyhow::{Context, Result};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An error and its causes on one line (`a: b: c`), each message once: libraries such as tch and reqwest repeat
/// their cause's message in their own, which `{:#}` would print twice. Takes `anyhow::Error::as_ref()` too.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The console's level as `LevelFilter as usize`; `info` until [`init`] says otherwise.
static STDERR_LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);

thread_local! {
    static FILE: RefCell<Option<File>> = const { RefCell::new(None) };
}

struct Logger;

static LOGGER: Logger = Logger;

fn level_filter(n: usize) -> LevelFilter {
    [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ][n.min(5)]
}

/// What the console shows.
pub fn stderr_level() -> LevelFilter {
    level_filter(STDERR_LEVEL.load(Ordering::Relaxed))
}

/// Whether a record of `level` reaches the console (progress bars show when `info` does).
pub fn shows(level: Level) -> bool {
    level <= stderr_level()
}

fn file_level() -> LevelFilter {
    stderr_level().max(LevelFilter::Info)
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // Only this crate's records: the HTTP and image libraries log their own internals at debug/trace.
        metadata.target().starts_with(env!("CARGO_CRATE_NAME"))
            && (metadata.level() <= stderr_level() || metadata.level() <= file_level())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match record.level() {
            Level::Error => format!("error: {}", record.args()),
            Level::Warn => format!("warning: {}", record.args()),
            _ => record.args().to_string(),
        };
        if record.level() <= stderr_level() {
            crate::io::progress::suspend(|| eprintln!("{line}"));
        }
        if record.level() <= file_level() {
            FILE.with(|f| {
                if let Some(f) = f.borrow_mut().as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            });
        }
    }

    fn flush(&self) {
        FILE.with(|f| {
            if let Some(f) = f.borrow_mut().as_mut() {
                let _ = f.flush();
            }
        });
    }
}

/// Installs the logger (once per process) and sets the console's level: `Off` for nothing, `Error` for `-q`,
/// `Info` by default, `Debug`/`Trace` for `-v`/`-vv`. Later calls only change the level.
pub fn init(stderr: LevelFilter) {
    STDERR_LEVEL.store(stderr as usize, Ordering::Relaxed);
    crate::io::progress::set_visible(stderr >= LevelFilter::Info);
    // Fails only when a logger is already installed: ours, or the embedding program's.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(stderr.max(LevelFilter::Info));
}

/// The console level of `-q` and a `-v` count.
pub fn level_from_flags(quiet: bool, verbose: u8) -> LevelFilter {
    match (quiet, verbose) {
        (true, _) => LevelFilter::Error,
        (false, 0) => LevelFilter::Info,
        (false, 1) => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// While alive, this thread's records are also appended to a file (a run's `log.txt`).
pub struct Tee {
    previous: Option<File>,
}

/// Appends this thread's records to `path` until the returned guard is dropped. Installs the logger at the
/// default level when no one has (a library caller that never ran [`init`] still gets its `log.txt`).
pub fn tee_to(path: &Path) -> Result<Tee> {
    if log::max_level() < LevelFilter::Info {
        init(stderr_level());
    }
    let _ = log::set_logger(&LOGGER);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let previous = FILE.with(|f| f.borrow_mut().replace(file));
    Ok(Tee { previous })
}

impl Drop for Tee {
    fn drop(&mut self) {
        let previous = self.previous.take();
        FILE.with(|f| *f.borrow_mut() = previous);
    }
}
