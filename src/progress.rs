//! Progress bars (indicatif) with rate and ETA; hidden under --quiet.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units named `unit` ("kimg", "images", "frames"), hidden when `verbosity < 0`.
pub fn bar(verbosity: i8, total: u64, unit: &str) -> ProgressBar {
    if verbosity < 0 {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    let template = format!(
        "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}}) {{msg}}"
    );
    pb.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb
}
