//! The I/O layer: files and formats, with no knowledge of GANs. Atomic writes (`fs`), images, video, the
//! reference's pickles, PyTorch state dicts (`torch_load`), TFRecords, TensorBoard event files, raw safetensors, HTTP
//! downloads and the catalogue of downloadable resources, progress bars and the logging facade.
//!
//! May import: nothing of this crate outside `io` (ARCHITECTURE.md).

pub mod download;
pub mod fs;
pub mod imageio;
pub mod log;
pub mod pickle;
pub mod progress;
pub mod resources;
pub mod safetensors;
pub mod tensorboard;
pub mod tfrecord;
pub mod torch_load;
pub mod video;
