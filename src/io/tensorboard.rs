//! A TensorBoard event-file writer: scalars and images (PNG or animated GIF) under the reference's keys
//! (docs/spec/progan_hp.md §2.7).
//!
//! An events file is a TFRecord stream (the framing in `tfrecord`) of `Event` protobufs. The three messages needed
//! here (Event, Summary.Value, Summary.Image) are small enough to encode by hand, which avoids an old protobuf stack.

use crate::io::tfrecord::{put_varint as varint, TfRecordWriter};
use anyhow::{Context, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends scalars and images to `<dir>/events.out.tfevents.<time>.hessian-gan`.
pub struct EventWriter {
    out: TfRecordWriter<BufWriter<std::fs::File>>,
    path: PathBuf,
}

fn key(buf: &mut Vec<u8>, field: u64, wire: u64) {
    varint(buf, (field << 3) | wire);
}

fn bytes_field(buf: &mut Vec<u8>, field: u64, data: &[u8]) {
    key(buf, field, 2);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `Event { wall_time = 1; step = 2; file_version = 3 | summary = 5 }`.
fn event(step: i64, file_version: Option<&str>, summary: Option<&[u8]>) -> Vec<u8> {
    let mut e = Vec::new();
    key(&mut e, 1, 1);
    e.extend_from_slice(&now().to_le_bytes());
    key(&mut e, 2, 0);
    varint(&mut e, step as u64);
    if let Some(v) = file_version {
        bytes_field(&mut e, 3, v.as_bytes());
    }
    if let Some(s) = summary {
        bytes_field(&mut e, 5, s);
    }
    e
}

impl EventWriter {
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("events.out.tfevents.{}.hessian-gan", now() as u64));
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = Self {
            out: TfRecordWriter::new(BufWriter::new(file)),
            path,
        };
        w.record(&event(0, Some("brain.Event:2"), None))?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write_record(data)
            .with_context(|| format!("cannot write TensorBoard events to {}", self.path.display()))
    }

    /// Scalars at `step` (the reference logs with step = images shown).
    pub fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (tag, v) in values {
            let mut value = Vec::new();
            bytes_field(&mut value, 1, tag.as_bytes());
            key(&mut value, 2, 5);
            value.extend_from_slice(&(*v as f32).to_le_bytes());
            bytes_field(&mut summary, 1, &value);
        }
        let e = event(step, None, Some(&summary));
        self.record(&e)
    }

    /// An encoded image (PNG, or GIF for animations) of the given size.
    pub fn image(
        &mut self,
        step: i64,
        tag: &str,
        width: u32,
        height: u32,
        encoded: &[u8],
    ) -> Result<()> {
        let mut img = Vec::new();
        key(&mut img, 1, 0);
        varint(&mut img, height as u64);
        key(&mut img, 2, 0);
        varint(&mut img, width as u64);
        key(&mut img, 3, 0);
        varint(&mut img, 3);
        bytes_field(&mut img, 4, encoded);
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        bytes_field(&mut value, 4, &img);
        let mut summary = Vec::new();
        bytes_field(&mut summary, 1, &value);
        let e = event(step, None, Some(&summary));
        self.record(&e)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out
            .get_mut()
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_encode_as_protobuf() {
        let mut b = Vec::new();
        varint(&mut b, 300);
        assert_eq!(b, vec![0xAC, 0x02]);
        let mut b = Vec::new();
        bytes_field(&mut b, 1, b"ab");
        assert_eq!(b, vec![0x0A, 2, b'a', b'b']);
    }
}
