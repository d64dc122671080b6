//! Multi-resolution datasets (docs/spec/progan_hp.md §2.5, §2.9, §4.5): the on-disk format, the streaming writer, the
//! training loader, creation from image folders and pix2pix pairs, and built-in synthetic datasets with ground-truth
//! factors.
//!
//! A dataset is a directory with `dataset.json` and one `rXX.npy` (uint8 [N, C, 2^XX, 2^XX]) per level
//! XX = 02 … log2(resolution), plus `factors.npy` (float32 [N, F]) when the images have ground-truth factors.

pub mod cascade;
pub mod format;
pub mod images;
pub mod loader;
pub mod locate;
pub mod npy;
pub mod reals;
pub mod synth;
pub mod writer;

pub use format::{is_complete, Dataset, DatasetMeta, FactorSpec, Level};
pub use loader::{Loader, LoaderState, Part};
pub use writer::{prepare_image, DatasetWriter, PreparedImage};

/// The command line of this process, for the `command` field of `dataset.json`.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
