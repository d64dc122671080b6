//! Progress bars for long jobs (indicatif): rate and ETA, hidden when the console does not show `info`
//! (`--quiet`, see [`set_visible`]). Every bar lives in one process-wide `MultiProgress`, through which the logger (`io::log`) prints,
//! so log lines appear above the bars instead of tearing them.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Whether bars are drawn; `io::log::init` turns them off when the console does not show `info`.
static VISIBLE: AtomicBool = AtomicBool::new(true);

/// Shows or hides the bars created from now on.
pub fn set_visible(visible: bool) {
    VISIBLE.store(visible, Ordering::Relaxed);
}

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// A bar over `len` items (or a spinner when `len` is unknown).
pub fn bar(len: Option<u64>, what: &str) -> ProgressBar {
    if !VISIBLE.load(Ordering::Relaxed) {
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
    multi().add(pb)
}

/// `pb` (with its own style) shown among the bars, or hidden like [`bar`]'s.
pub fn add(pb: ProgressBar) -> ProgressBar {
    if !VISIBLE.load(Ordering::Relaxed) {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        return pb;
    }
    multi().add(pb)
}

/// Runs `f` with the bars cleared from the terminal (for printing), then redraws them.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    multi().suspend(f)
}
