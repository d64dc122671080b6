//! Reads a PyTorch state dict written by `torch.save(model.state_dict(), path)` without executing anything: the
//! pretrained BigGAN generator `G_ema.pth` of docs/spec/progan_hp.md §11 comes as one.
//!
//! Two on-disk formats:
//! - **zip** (PyTorch ≥ 1.6): `<dir>/data.pkl`, the pickle, and one entry `<dir>/data/<key>` of raw bytes per
//!   storage; `<dir>/byteorder` says `little` or `big` (absent: little).
//! - **legacy** (before 1.6, or `_use_new_zipfile_serialization=False`; the 2019 BigGAN checkpoint): one after the
//!   other, a pickle of the magic number, one of the protocol version (1001), one of the writer's `sys_info` (byte
//!   order, type sizes), the main pickle, a pickle of the list of storage keys; then for each key of that list an
//!   8-byte little-endian element count followed by the raw elements.
//!
//! The main pickle goes through the restricted interpreter of `io::pickle` with [`AllowList::TorchStateDict`]: only
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor[_v2]`, `torch._utils._rebuild_parameter` and the
//! `torch[.cuda].<Type>Storage` classes may be named, and none of them is called. A tensor arrives as a recorded
//! `_rebuild_tensor_v2(storage, offset, size, stride, …)` whose storage is a persistent id
//! `('storage', <Type>Storage, key, location, numel[, view])`; this module reads the storage's bytes and takes the
//! view itself, with every index checked against the storage's length.
//!
//! What comes back: `(name, tensor)` in the file's order, on the CPU, contiguous, not requiring grad. Floating
//! tensors (f16, bf16, f32, f64) become `Kind::Float`; integer and bool tensors (e.g. `num_batches_tracked`) become
//! `Kind::Int64`. The `_metadata` attribute PyTorch attaches to a state dict (module versions) is not returned.
//! Tensors that share a storage in the file may share memory here, as with `torch.load`.

use crate::io::pickle::{self, AllowList, Global, Value};
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

/// The legacy format's magic number, `0x1950a86a20f9469cfc6c`, as pickle's LONG1 stores it (little-endian).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;
/// The largest `data.pkl` read from a zip (the pickle holds names and shapes, not data).
const MAX_PICKLE_BYTES: u64 = 1 << 30;
/// The most elements a tensor may have beyond its storage's (stride-0 views repeat elements; copying a crafted one
/// could ask for any amount of memory).
const MAX_EXPANDED: i64 = 1 << 24;

/// Reads the state dict at `path` (zip or legacy format, detected from the first bytes). Errors name the file and
/// say what to do: a refused global (named), a truncated storage, a top level that is not a dict of tensors.
pub fn load_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    read(path).with_context(|| format!("{}", path.display()))
}

fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .context("cannot open the PyTorch checkpoint")?;
    if n == 4 && head == *b"PK\x03\x04" {
        read_zip(path)
    } else {
        let bytes = std::fs::read(path).context("cannot read the PyTorch checkpoint")?;
        read_legacy(&bytes)
    }
}

/// One tensor of the pickle: where its elements are.
struct TensorRef {
    /// Key of the storage holding the data.
    key: String,
    /// Element type, as in `torch.<Type>Storage`.
    ty: &'static str,
    /// The storage's length in elements, as the persistent id records it.
    numel: u64,
    /// Offset in elements from the start of the stored storage (a legacy view's offset included).
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
    /// A legacy storage view's length: indices must stay below `offset_of_view + view_len`.
    view_end: Option<i64>,
}

fn element_size(ty: &str) -> usize {
    match ty {
        "Double" | "Long" => 8,
        "Float" | "Int" => 4,
        "Half" | "BFloat16" | "Short" => 2,
        _ => 1, // Char, Byte, Bool
    }
}

fn kind_of(ty: &str) -> Kind {
    match ty {
        "Double" => Kind::Double,
        "Float" => Kind::Float,
        "Half" => Kind::Half,
        "BFloat16" => Kind::BFloat16,
        "Long" => Kind::Int64,
        "Int" => Kind::Int,
        "Short" => Kind::Int16,
        "Char" => Kind::Int8,
        "Byte" => Kind::Uint8,
        _ => Kind::Bool,
    }
}

/// The state dict's entries: `(name, tensor reference)`, from the main pickle's top-level value.
fn entries(value: &Value) -> Result<Vec<(String, TensorRef)>> {
    let items = value.as_dict().ok_or_else(|| {
        anyhow!(
            "the file holds a {}, not a state dict (a dict of tensors): save model.state_dict() instead",
            value.type_name()
        )
    })?;
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let name = k.as_str().ok_or_else(|| {
            anyhow!(
                "a state dict key is a {}, not a string: save model.state_dict() instead",
                k.type_name()
            )
        })?;
        // OrderedDict's attributes (BUILD state) merge into the dict: PyTorch's module versions.
        if name == "_metadata" && matches!(v, Value::Dict(_)) {
            continue;
        }
        let t = tensor_ref(&v).with_context(|| format!("state dict entry '{name}'"))?;
        out.push((name, t));
    }
    Ok(out)
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>> {
    v.as_seq()
        .and_then(|s| s.iter().map(Value::as_i64).collect::<Option<Vec<i64>>>())
        .ok_or_else(|| anyhow!("malformed tensor: its {what} is a {}", v.type_name()))
}

fn tensor_ref(v: &Value) -> Result<TensorRef> {
    match v {
        Value::Reduced(Global::TorchRebuildTensor, args) => {
            ensure!(
                args.len() >= 4,
                "malformed tensor: _rebuild_tensor with {} arguments",
                args.len()
            );
            let Value::PersistentId(pid) = &args[0] else {
                bail!(
                    "malformed tensor: its storage is a {}, not a persistent id",
                    args[0].type_name()
                );
            };
            let pid = pid
                .as_seq()
                .filter(|p| p.len() >= 5)
                .ok_or_else(|| anyhow!("malformed storage reference {}", pid.render()))?;
            ensure!(
                pid[0].as_str().as_deref() == Some("storage"),
                "unsupported persistent id {}: only tensor storages are read",
                pid[0].render()
            );
            let Value::Global(Global::TorchStorage(ty)) = pid[1] else {
                bail!("malformed storage reference: the type is a {}", pid[1].type_name());
            };
            let key = pid[2]
                .as_str()
                .or_else(|| pid[2].as_i64().map(|i| i.to_string()))
                .ok_or_else(|| anyhow!("malformed storage reference: key {}", pid[2].render()))?;
            let numel = pid[4]
                .as_i64()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| anyhow!("malformed storage reference: length {}", pid[4].render()))?;
            let mut offset = args[1]
                .as_i64()
                .ok_or_else(|| anyhow!("malformed tensor: offset {}", args[1].render()))?;
            // Legacy storage views: (view key, offset into the root storage, view length).
            let mut view_end = None;
            if let Some(view) = pid.get(5).and_then(Value::as_seq) {
                let (Some(at), Some(len)) = (
                    view.get(1).and_then(Value::as_i64),
                    view.get(2).and_then(Value::as_i64),
                ) else {
                    bail!("malformed storage view {}", pid[5].render());
                };
                offset = offset
                    .checked_add(at)
                    .ok_or_else(|| anyhow!("malformed storage view offset {at}"))?;
                view_end = Some(at.saturating_add(len));
            }
            Ok(TensorRef {
                key,
                ty,
                numel,
                offset,
                size: ints(&args[2], "size")?,
                stride: ints(&args[3], "stride")?,
                view_end,
            })
        }
        Value::Reduced(Global::TorchRebuildParameter, args) => match args.first() {
            Some(t) => tensor_ref(t),
            None => bail!("malformed parameter: _rebuild_parameter without a tensor"),
        },
        Value::Dict(_) => bail!(
            "is a nested dict, not a tensor: the file looks like a training checkpoint of several dicts; save the \
             network's own state dict (e.g. torch.save(ckpt['G'], path) or torch.save(G.state_dict(), path))"
        ),
        other => bail!(
            "is a {}, not a tensor: save model.state_dict() instead",
            other.type_name()
        ),
    }
}

/// Storage keys → element type, over every tensor; a key named with two types is an error.
fn storage_types(refs: &[(String, TensorRef)]) -> Result<HashMap<String, &'static str>> {
    let mut types: HashMap<String, &'static str> = HashMap::new();
    for (name, t) in refs {
        let ty = *types.entry(t.key.clone()).or_insert(t.ty);
        ensure!(
            ty == t.ty,
            "malformed checkpoint: storage '{}' is read as {ty} and as {} (entry '{name}')",
            t.key,
            t.ty
        );
    }
    Ok(types)
}

/// A storage's raw bytes as a 1-D tensor of Float (floating types) or Int64 (the rest).
fn storage_tensor(bytes: &[u8], ty: &str, little_endian: bool) -> Result<Tensor> {
    let size = element_size(ty);
    ensure!(
        bytes.len().is_multiple_of(size),
        "internal error: ragged storage"
    );
    let numel = (bytes.len() / size) as i64;
    let swapped;
    let bytes = if little_endian || size == 1 {
        bytes
    } else {
        swapped = bytes
            .chunks_exact(size)
            .flat_map(|c| c.iter().rev().copied())
            .collect::<Vec<u8>>();
        &swapped[..]
    };
    // The length was checked above: from_data_size copies numel × size bytes.
    let raw = Tensor::f_from_data_size(bytes, &[numel], kind_of(ty))?;
    let target = if raw.is_floating_point() {
        Kind::Float
    } else {
        Kind::Int64
    };
    Ok(raw.f_to_kind(target)?)
}

/// The tensor `t` views in `storage` (`numel` elements), after checking every index it reaches.
fn view(storage: &Tensor, numel: i64, t: &TensorRef) -> Result<Tensor> {
    ensure!(
        t.size.len() == t.stride.len(),
        "malformed tensor: size {:?} and stride {:?} differ in rank",
        t.size,
        t.stride
    );
    ensure!(
        t.offset >= 0 && t.size.iter().chain(&t.stride).all(|&v| v >= 0),
        "malformed tensor: offset {}, size {:?}, stride {:?}",
        t.offset,
        t.size,
        t.stride
    );
    if !t.size.contains(&0) {
        let elements = t.size.iter().try_fold(1i64, |a, &n| a.checked_mul(n));
        ensure!(
            elements.is_some_and(|e| e <= numel.max(MAX_EXPANDED)),
            "malformed tensor: size {:?} repeats the {numel} elements of storage '{}' beyond {MAX_EXPANDED}",
            t.size,
            t.key
        );
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&n, &s)| {
                (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d))
            })
            .ok_or_else(|| anyhow!("malformed tensor: size {:?} overflows", t.size))?;
        let end = t.view_end.map_or(numel, |e| e.min(numel));
        ensure!(
            last < end,
            "the tensor (offset {}, size {:?}, stride {:?}) reaches element {last} of storage '{}', which holds \
             {end}: the file is truncated or damaged (re-download it)",
            t.offset,
            t.size,
            t.stride,
            t.key
        );
    }
    Ok(storage
        .f_as_strided(t.size.as_slice(), t.stride.as_slice(), t.offset)?
        .f_contiguous()?)
}

/// Builds the tensors from their references and the storages' bytes.
fn assemble<'a>(
    refs: Vec<(String, TensorRef)>,
    mut bytes_of: impl FnMut(&TensorRef) -> Result<Cow<'a, [u8]>>,
    little_endian: bool,
) -> Result<Vec<(String, Tensor)>> {
    let mut storages: HashMap<String, (Tensor, i64)> = HashMap::new();
    let mut out = Vec::with_capacity(refs.len());
    for (name, t) in refs {
        if !storages.contains_key(&t.key) {
            let bytes = bytes_of(&t)?;
            let numel = (bytes.len() / element_size(t.ty)) as i64;
            let st = storage_tensor(&bytes, t.ty, little_endian)
                .with_context(|| format!("storage '{}'", t.key))?;
            storages.insert(t.key.clone(), (st, numel));
        }
        let (st, numel) = &storages[&t.key];
        let tensor = view(st, *numel, &t).with_context(|| format!("state dict entry '{name}'"))?;
        out.push((name, tensor));
    }
    Ok(out)
}

fn read_zip(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path).context("cannot open the PyTorch checkpoint")?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        anyhow!(
            "not a readable zip archive ({e}): the file is truncated or damaged (re-download it)"
        )
    })?;
    let pkl = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "a zip archive without '<name>/data.pkl': not a torch.save file (save it with \
                 torch.save(model.state_dict(), path))"
            )
        })?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut read_entry = |name: &str, limit: u64| -> Result<Vec<u8>> {
        let entry = zip.by_name(name).map_err(|e| anyhow!("{name}: {e}"))?;
        let mut buf = Vec::new();
        entry.take(limit).read_to_end(&mut buf).map_err(|e| {
            anyhow!("cannot read {name} ({e}): the file is damaged (re-download it)")
        })?;
        Ok(buf)
    };
    let little_endian = match read_entry(&format!("{prefix}byteorder"), 16) {
        Ok(b) => match String::from_utf8_lossy(&b).trim() {
            "little" => true,
            "big" => false,
            other => bail!("unknown byte order '{other}' in {prefix}byteorder"),
        },
        Err(_) => true,
    };
    let main = pickle::load_with(
        &read_entry(&pkl, MAX_PICKLE_BYTES)?,
        AllowList::TorchStateDict,
    )
    .with_context(|| pkl.clone())?;
    let refs = entries(&main.value)?;
    storage_types(&refs)?;
    assemble(
        refs,
        |t| {
            let name = format!("{prefix}data/{}", t.key);
            let need = t.numel.saturating_mul(element_size(t.ty) as u64);
            let bytes = read_entry(&name, need).with_context(|| {
                format!(
                    "storage '{}' is missing: the file is truncated or damaged (re-download it)",
                    t.key
                )
            })?;
            ensure!(
                bytes.len() as u64 == need,
                "storage '{}' holds {} bytes, its {} {} elements need {need}: the file is truncated or damaged \
                 (re-download it)",
                t.key,
                bytes.len(),
                t.numel,
                t.ty
            );
            Ok(Cow::Owned(bytes))
        },
        little_endian,
    )
}

/// The length of the magic-number pickle at the start of a legacy file, or `None` when it is not there.
fn legacy_magic(bytes: &[u8]) -> Option<usize> {
    let mut pos = 0;
    if bytes.first() == Some(&0x80) {
        pos += 2; // PROTO n
    }
    if bytes.get(pos) == Some(&0x95) {
        pos += 9; // FRAME + 8-byte length
    }
    let rest = bytes.get(pos..pos + 13)?;
    (rest[..2] == [0x8a, 10] && rest[2..12] == LEGACY_MAGIC && rest[12] == b'.').then_some(pos + 13)
}

fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let Some(mut pos) = legacy_magic(bytes) else {
        bail!(
            "not a PyTorch checkpoint: neither a zip archive (torch.save since 1.6) nor the legacy torch.save \
             format (which starts with a magic-number pickle); save it with torch.save(model.state_dict(), path)"
        );
    };
    let mut next = |what: &str| -> Result<Value> {
        let l = pickle::load_with(&bytes[pos..], AllowList::TorchStateDict)
            .with_context(|| format!("the legacy format's {what} pickle at byte {pos}"))?;
        pos += l.len;
        Ok(l.value)
    };
    let version = next("protocol version")?;
    ensure!(
        version.as_i64() == Some(LEGACY_PROTOCOL),
        "unsupported legacy torch.save protocol version {} (expected {LEGACY_PROTOCOL}): re-save the file with a \
         recent PyTorch",
        version.render()
    );
    let sys_info = next("sys_info")?;
    let little_endian = !matches!(sys_info.get("little_endian"), Some(Value::Bool(false)));
    let main = next("main")?;
    let refs = entries(&main)?;
    let keys = next("storage key list")?
        .as_seq()
        .and_then(|s| s.iter().map(Value::as_str).collect::<Option<Vec<String>>>())
        .ok_or_else(|| {
            anyhow!("malformed legacy checkpoint: the storage key list is not a list of strings")
        })?;
    let types = storage_types(&refs)?;
    // The storages follow in the key list's order: an element count, then the elements.
    let mut data: HashMap<String, &[u8]> = HashMap::new();
    for key in &keys {
        let ty = *types.get(key).ok_or_else(|| {
            anyhow!("malformed legacy checkpoint: storage '{key}' is listed but no tensor uses it")
        })?;
        let head = bytes.get(pos..pos + 8).ok_or_else(|| {
            anyhow!(
                "storage '{key}' is missing: the file ends at byte {}, truncated (re-download it)",
                bytes.len()
            )
        })?;
        let count = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        pos += 8;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(element_size(ty)))
            .filter(|&l| l <= bytes.len() - pos)
            .ok_or_else(|| {
                anyhow!(
                    "storage '{key}' needs {count} {ty} elements, the file ends {} bytes later: it is truncated \
                     (re-download it)",
                    bytes.len() - pos
                )
            })?;
        data.insert(key.clone(), &bytes[pos..pos + len]);
        pos += len;
    }
    assemble(
        refs,
        |t| {
            data.get(&t.key).map(|&b| Cow::Borrowed(b)).ok_or_else(|| {
                anyhow!(
                    "malformed legacy checkpoint: storage '{}' is used but not in the key list",
                    t.key
                )
            })
        },
        little_endian,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_magic_with_and_without_a_protocol_opcode() {
        let mut p = vec![0x80, 2, 0x8a, 10];
        p.extend(LEGACY_MAGIC);
        p.push(b'.');
        assert_eq!(legacy_magic(&p), Some(15));
        assert_eq!(legacy_magic(&p[2..]), Some(13));
        p[5] ^= 1;
        assert_eq!(legacy_magic(&p), None);
        assert_eq!(legacy_magic(b"\x80\x02}."), None);
    }

    #[test]
    fn storages_convert_and_swap_bytes() {
        let be: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let t = storage_tensor(&be, "Float", false).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.5, -2.0]);
        // f16 1.0 = 0x3c00, bf16 -2.0 = 0xc000; bytes 0xff as Char is -1.
        let h = storage_tensor(&[0x00, 0x3c], "Half", true).unwrap();
        let b = storage_tensor(&[0x00, 0xc0], "BFloat16", true).unwrap();
        let c = storage_tensor(&[0xff], "Char", true).unwrap();
        assert_eq!((h.kind(), h.double_value(&[0])), (Kind::Float, 1.0));
        assert_eq!(b.double_value(&[0]), -2.0);
        assert_eq!((c.kind(), c.int64_value(&[0])), (Kind::Int64, -1));
    }

    #[test]
    fn views_are_bounds_checked() {
        let st = Tensor::arange(6, (Kind::Float, tch::Device::Cpu));
        let r = |offset, size: Vec<i64>, stride: Vec<i64>| TensorRef {
            key: "0".into(),
            ty: "Float",
            numel: 6,
            offset,
            size,
            stride,
            view_end: None,
        };
        let t = view(&st, 6, &r(1, vec![2, 2], vec![1, 3])).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(&t.flatten(0, -1)).unwrap(),
            vec![1., 4., 2., 5.]
        );
        assert!(view(&st, 6, &r(0, vec![0, 9], vec![9, 1])).is_ok());
        for bad in [
            r(3, vec![2, 2], vec![1, 3]),
            r(-1, vec![1], vec![1]),
            r(0, vec![2], vec![-1]),
            r(0, vec![2, 2], vec![1]),
            r(0, vec![i64::MAX, 2], vec![i64::MAX, 1]),
            r(0, vec![1 << 30], vec![0]),
        ] {
            let err = format!("{:#}", view(&st, 6, &bad).err().unwrap());
            assert!(
                err.contains("truncated") || err.contains("malformed"),
                "{err}"
            );
        }
        let mut short_view = r(0, vec![4], vec![1]);
        short_view.view_end = Some(3);
        assert!(view(&st, 6, &short_view).is_err());
    }
}
