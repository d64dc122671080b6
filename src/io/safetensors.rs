//! Snapshot files: one safetensors file holding named float32 tensors plus string metadata (JSON values), written
//! to a temporary name, flushed and renamed. Readable from Python with `safetensors.safe_open(path, "pt")` (tensors)
//! and `.metadata()` (the JSON strings).
//!
//! The metadata key `checksum` holds `crc32c:<hex>` of every tensor's name and bytes in name order; [`load`]
//! verifies it, so a torn or bit-flipped file is refused with a one-line error instead of resuming from garbage.
//! Files without the key (older snapshots) load unverified.

use crate::io::fs;
use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A float32 tensor copied to host memory, ready to serialise.
struct HostTensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl HostTensor {
    fn new(t: &Tensor) -> Self {
        let t = t
            .detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let n = t.numel();
        let mut values = vec![0f32; n];
        t.copy_data(&mut values, n);
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            shape: t.size().iter().map(|&d| d as usize).collect(),
            bytes,
        }
    }
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The string metadata of the file at `path`, reading only its header (not verified: [`verify`] reads it all).
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .with_context(|| format!("{} is not a snapshot (too short)", path.display()))?;
    let n = u64::from_le_bytes(len);
    ensure!(
        n < 100 << 20,
        "{} is not a snapshot (header of {n} bytes)",
        path.display()
    );
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .with_context(|| format!("{} is truncated", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&header)
        .with_context(|| format!("{} has a corrupt header", path.display()))?;
    Ok(v.get("__metadata__")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// Writes `tensors` (any float kind, any device; stored as float32) and `metadata` to `path` atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let host: Vec<(String, HostTensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), HostTensor::new(t)))
        .collect();
    let mut metadata = metadata;
    metadata.insert(
        CHECKSUM_KEY.to_string(),
        checksum(host.iter().map(|(n, t)| (n.as_str(), t.bytes.as_slice()))),
    );
    fs::write_atomic(path, |tmp| {
        safetensors::serialize_to_file(
            host.iter().map(|(n, t)| (n.as_str(), t)),
            &Some(metadata),
            tmp,
        )
        .map_err(|e| match e {
            // The OS's own words ("No space left on device (os error 28)"), not the wrapper's Debug form.
            SafeTensorError::IoError(io) => anyhow::Error::new(io),
            other => anyhow::anyhow!("{other:?}"),
        })
        .with_context(|| format!("cannot write snapshot {}", path.display()))
    })
}

/// The metadata key of the checksum.
pub const CHECKSUM_KEY: &str = "checksum";

/// `crc32c:<8 hex digits>` over each tensor's name, its byte length and its bytes, in name order.
fn checksum<'a>(tensors: impl Iterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut sorted: Vec<(&str, &[u8])> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut crc = 0u32;
    for (name, bytes) in sorted {
        crc = crc32c::crc32c_append(crc, name.as_bytes());
        crc = crc32c::crc32c_append(crc, &(bytes.len() as u64).to_le_bytes());
        crc = crc32c::crc32c_append(crc, bytes);
    }
    format!("crc32c:{crc:08x}")
}

/// Checks that `path` is a whole safetensors file whose checksum (when it has one) matches its tensors.
pub fn verify(path: &Path) -> Result<()> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    parse(path, &bytes).map(|_| ())
}

/// The parsed file and its metadata, checksum verified.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a safetensors snapshot ({e:?})", path.display()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("{} is a corrupt safetensors file ({e:?})", path.display()))?;
    if let Some(want) = metadata.get(CHECKSUM_KEY) {
        let views = st.tensors();
        let got = checksum(views.iter().map(|(n, v)| (n.as_str(), v.data())));
        ensure!(
            &got == want,
            "{} is damaged: its checksum is {got}, it was written with {want} (a torn write or a corrupted disk)",
            path.display()
        );
    }
    Ok((st, metadata))
}

/// Reads every tensor (onto the CPU) and the metadata of a snapshot, after checking its checksum when it has one.
pub fn load(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    let (st, metadata) = parse(path, &bytes)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            bail!(
                "{}: tensor {name} has dtype {:?}; snapshots hold float32",
                path.display(),
                view.dtype()
            );
        }
        let data = view.data();
        ensure!(
            data.len() % 4 == 0,
            "{}: tensor {name} has a truncated payload",
            path.display()
        );
        let values: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.insert(name, Tensor::from_slice(&values).reshape(shape.as_slice()));
    }
    Ok((out, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values_shapes_and_metadata() {
        let dir = std::env::temp_dir().join(format!("hg-snap-{}", std::process::id()));
        let path = dir.join("s.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0, 7.0, 1e-8]).reshape([2, 3]);
        let b = Tensor::from_slice(&[42.0f32]).reshape([]);
        let meta = HashMap::from([("config".to_string(), "{\"nz\":3}".to_string())]);
        save(
            &path,
            &[
                ("G/w".into(), a.shallow_clone()),
                ("opt/step".into(), b.shallow_clone()),
            ],
            meta,
        )
        .unwrap();
        let (t, m) = load(&path).unwrap();
        assert!(t["G/w"].equal(&a));
        assert_eq!(t["opt/step"].size(), Vec::<i64>::new());
        assert_eq!(t["opt/step"].double_value(&[]), 42.0);
        assert_eq!(m["config"], "{\"nz\":3}");
        assert!(m[CHECKSUM_KEY].starts_with("crc32c:"));
        // One flipped bit in the data is refused with the file's name.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("s.safetensors is damaged"), "{err}");
        std::fs::write(&path, b"not a snapshot").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("s.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
