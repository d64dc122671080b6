//! Progress bars for long jobs (indicatif): rate and ETA, hidden with `--quiet`.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items (or a spinner when `len` is unknown), hidden when `verbosity < 0`.
pub fn bar(len: Option<u64>, what: &str, verbosity: i8) -> ProgressBar {
    if verbosity < 0 {
        return ProgressBar::hidden();
    }
    let pb = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {pos} {per_sec}")
                .expect("valid template"),
        ),
    };
    pb.set_message(what.to_string());
    pb
}
