//! Snapshot files: one safetensors file holding named float32 tensors plus string metadata (JSON values), written
//! to a temporary name and renamed. Readable from Python with `safetensors.safe_open(path, "pt")` (tensors) and
//! `.metadata()` (the JSON strings).

use crate::io::fs;
use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
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
    fs::write_atomic(path, |tmp| {
        safetensors::serialize_to_file(
            host.iter().map(|(n, t)| (n.as_str(), t)),
            &Some(metadata),
            tmp,
        )
        .with_context(|| format!("cannot write snapshot {}", path.display()))
    })
}

/// Reads every tensor (onto the CPU) and the metadata of a snapshot.
pub fn load(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a safetensors snapshot ({e:?})", path.display()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is a corrupt safetensors file ({e:?})", path.display()))?;
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
        std::fs::write(&path, b"not a snapshot").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("s.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
