//! A restricted Python pickle reader, sufficient for the reference's `network-snapshot-*.pkl` files (docs/spec/progan_hp.md
//! §1.7, §15.8): protocols 0–4 (5's out-of-band buffers are refused), the tuple `(G, D, Gs)` of
//! `dnnlib.tflib.network.Network` objects rebuilt through NEWOBJ/REDUCE + BUILD with their state dict, NumPy arrays
//! (`numpy.core.multiarray._reconstruct` or NumPy 2's `numpy._core.multiarray._reconstruct`, with `numpy.ndarray`,
//! `numpy.dtype` and the BUILD state holding the raw bytes) and NumPy scalars (`…multiarray.scalar`, e.g. the 0-d
//! `lod`).
//!
//! Nothing is ever executed. A pickle is a program for Python's unpickler, and `GLOBAL` + `REDUCE` can call any
//! function (`os.system`, `builtins.eval`, …). Here every global is checked against a short allow-list the moment it
//! is named, and anything else stops the load with an error naming it. The allowed globals are not called either:
//! each is a tag that this interpreter turns into data (an array, a dtype, a `Network` record). The embedded Python
//! source of the reference's networks (`build_module_src`) is an ordinary string and is never looked at.
//!
//! The same machine reads the pickle inside a PyTorch `torch.save` file under a second allow-list
//! ([`AllowList::TorchStateDict`], used by `io::torch_load`): `collections.OrderedDict`, `torch._utils._rebuild_tensor`
//! / `_rebuild_tensor_v2` / `_rebuild_parameter` and the `torch[.cuda].<Type>Storage` classes, with the persistent-id
//! opcodes that name a tensor's storage. Those calls are not made either: REDUCE records them as
//! [`Value::Reduced`] and a persistent id becomes [`Value::PersistentId`], which the caller interprets.
//!
//! serde-pickle was considered: it resolves only a fixed set of builtin globals and either errors on others or
//! replaces them with `None`, so it cannot rebuild NumPy arrays or the `Network` objects; this interpreter is small.

use anyhow::{anyhow, bail, ensure, Context, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::rc::Rc;

/// The globals a pickle may name. Everything else is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `dnnlib.tflib.network.Network` (the reference's network wrapper).
    Network,
    /// `numpy.core.multiarray._reconstruct` / `numpy._core.multiarray._reconstruct`.
    NdarrayReconstruct,
    /// `numpy.ndarray` (the class argument of `_reconstruct`).
    Ndarray,
    /// `numpy.dtype`.
    Dtype,
    /// `numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`.
    NumpyScalar,
    /// `_codecs.encode`: how protocols 0–2 store Python 3 `bytes` (`encode(text, "latin1")`).
    CodecsEncode,
    /// `copy_reg._reconstructor` / `copyreg._reconstructor` (protocols 0–1 objects).
    CopyregReconstructor,
    /// `builtins.object` / `__builtin__.object` (an argument of `_reconstructor`).
    Object,
    /// `collections.OrderedDict` and `dnnlib.util.EasyDict`: dict subclasses, read as dicts.
    DictClass,
    /// `torch._utils._rebuild_tensor_v2` / `_rebuild_tensor` (torch flavour only): a tensor as
    /// `(storage, offset, size, stride, …)`.
    TorchRebuildTensor,
    /// `torch._utils._rebuild_parameter` (torch flavour only): `(tensor, requires_grad, hooks)`.
    TorchRebuildParameter,
    /// `torch.<T>Storage` / `torch.cuda.<T>Storage` (torch flavour only), holding `T` (`"Float"`, `"Half"`, …): the
    /// element type named in a storage's persistent id.
    TorchStorage(&'static str),
}

/// Which globals a pickle may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowList {
    /// The reference's TF checkpoints: NumPy arrays and scalars, `dnnlib` networks (persistent ids refused).
    Reference,
    /// A PyTorch state dict: `OrderedDict`, the tensor rebuild functions and the storage classes, with persistent
    /// ids. No NumPy, no `_codecs`, no `copyreg`.
    TorchStateDict,
}

/// The element types of `torch.<T>Storage` a state dict may name.
const TORCH_STORAGES: [&str; 10] = [
    "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
];

impl Global {
    /// The allow-list: `module.name` → tag.
    fn lookup(module: &str, name: &str, allow: AllowList) -> Option<Self> {
        if allow == AllowList::TorchStateDict {
            return match (module, name) {
                ("collections", "OrderedDict") => Some(Self::DictClass),
                ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                    Some(Self::TorchRebuildTensor)
                }
                ("torch._utils", "_rebuild_parameter") => Some(Self::TorchRebuildParameter),
                ("torch" | "torch.cuda", _) => {
                    let ty = name.strip_suffix("Storage")?;
                    TORCH_STORAGES
                        .iter()
                        .find(|&&t| t == ty)
                        .map(|&t| Self::TorchStorage(t))
                }
                _ => None,
            };
        }
        Some(match (module, name) {
            ("dnnlib.tflib.network", "Network") => Self::Network,
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Self::NdarrayReconstruct
            }
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Self::NumpyScalar,
            ("numpy", "ndarray") => Self::Ndarray,
            ("numpy", "dtype") => Self::Dtype,
            ("_codecs", "encode") => Self::CodecsEncode,
            ("copy_reg" | "copyreg", "_reconstructor") => Self::CopyregReconstructor,
            ("builtins" | "__builtin__", "object") => Self::Object,
            ("collections", "OrderedDict") | ("dnnlib.util", "EasyDict") => Self::DictClass,
            _ => return None,
        })
    }
}

/// A NumPy dtype as far as this reader needs it: numeric kinds only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dtype {
    /// NumPy's kind character: `f` float, `i` signed, `u` unsigned, `b` bool.
    pub kind: char,
    /// Bytes per element.
    pub itemsize: usize,
    /// False only for an explicit big-endian (`>`) byte order.
    pub little_endian: bool,
}

impl Dtype {
    /// Parses a dtype string such as `f4`, `<f8`, `i8`, `b1`, `u1`.
    fn parse(descr: &str) -> Result<Self> {
        let (order, rest) = match descr.chars().next() {
            Some(c @ ('<' | '>' | '=' | '|')) => (c, &descr[1..]),
            _ => ('=', descr),
        };
        let mut chars = rest.chars();
        let kind = chars.next().ok_or_else(|| anyhow!("empty dtype"))?;
        let size: usize = chars
            .as_str()
            .parse()
            .map_err(|_| anyhow!("unsupported NumPy dtype '{descr}' (numeric dtypes only)"))?;
        ensure!(
            matches!(kind, 'f' | 'i' | 'u' | 'b') && [1, 2, 4, 8].contains(&size),
            "unsupported NumPy dtype '{descr}' (numeric dtypes only)"
        );
        Ok(Self {
            kind,
            itemsize: size,
            little_endian: order != '>',
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = if self.little_endian { '<' } else { '>' };
        write!(f, "{order}{}{}", self.kind, self.itemsize)
    }
}

/// A NumPy array (or scalar, with an empty shape): raw element bytes as pickled.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    /// Column-major element order (`is_fortran` in the pickle).
    pub fortran_order: bool,
    pub data: Vec<u8>,
}

impl NdArray {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 in C (row-major) order, converting f16/f64/integers/bools; byte order as recorded.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let n = self.numel();
        let size = self.dtype.itemsize;
        ensure!(
            self.data.len() == n * size,
            "a NumPy array of shape {:?} and dtype {} needs {} bytes, the pickle holds {}",
            self.shape,
            self.dtype,
            n * size,
            self.data.len()
        );
        let le = self.dtype.little_endian;
        let word = |chunk: &[u8]| -> u64 {
            let mut b = [0u8; 8];
            if le {
                b[..size].copy_from_slice(chunk);
                u64::from_le_bytes(b)
            } else {
                b[8 - size..].copy_from_slice(chunk);
                u64::from_be_bytes(b)
            }
        };
        let convert = |bits: u64| -> f32 {
            match (self.dtype.kind, size) {
                ('f', 2) => f16_to_f32(bits as u16),
                ('f', 4) => f32::from_bits(bits as u32),
                ('f', 8) => f64::from_bits(bits) as f32,
                ('i', s) => {
                    let shift = 64 - 8 * s as u32;
                    (((bits << shift) as i64) >> shift) as f32
                }
                ('u' | 'b', _) => bits as f32,
                _ => f32::NAN, // Dtype::parse admits nothing else
            }
        };
        let values: Vec<f32> = self
            .data
            .chunks_exact(size)
            .map(|c| convert(word(c)))
            .collect();
        if !self.fortran_order || self.shape.len() < 2 {
            return Ok(values);
        }
        // Column-major → row-major: element with C index (i0, …, ik) sits at Fortran offset Σ i_d · Π_{e<d} n_e.
        let dims = &self.shape;
        let mut strides = vec![1usize; dims.len()];
        for d in 1..dims.len() {
            strides[d] = strides[d - 1] * dims[d - 1];
        }
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; dims.len()];
        for _ in 0..n {
            out.push(values[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
            for d in (0..dims.len()).rev() {
                idx[d] += 1;
                if idx[d] < dims[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(out)
    }
}

/// IEEE half → single.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac · 2^-24.
            let v = frac as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// A `dnnlib.tflib.network.Network` (or any object of an allowed class) as restored: its BUILD state.
#[derive(Clone, Debug, Default)]
pub struct Instance {
    /// `module.name` of the class.
    pub class: String,
    /// The `__setstate__` argument (for Network: the dict of docs/spec/progan_hp.md §1.7); `None` before BUILD.
    pub state: Option<Value>,
}

/// What an object under construction is; BUILD turns the placeholders into finished values.
#[derive(Clone, Debug)]
pub enum Obj {
    Instance(Instance),
    /// `_reconstruct(ndarray, (0,), b'b')` before its BUILD.
    EmptyArray,
    Array(NdArray),
    Dtype(Dtype),
}

/// A value on the unpickler's stack. Lists, dicts and objects are shared (memo and stack see the same thing), as in
/// Python, because APPENDS / SETITEMS / BUILD mutate them after they were memoised.
#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Python 3 `bytes`, or a Python 2 `str` (protocols 0–2 `STRING` opcodes).
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    /// Python dict (insertion order kept).
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// An allowed global, not yet applied.
    Global(Global),
    Obj(Rc<RefCell<Obj>>),
    /// A persistent id (BINPERSID / PERSID, torch flavour only): the pid object itself, for the caller to resolve
    /// (a torch storage reference `('storage', <Type>Storage, key, location, numel[, view])`).
    PersistentId(Rc<Value>),
    /// A REDUCE of a torch rebuild function (torch flavour only), recorded with its arguments and not called.
    Reduced(Global, Rc<Vec<Value>>),
}

impl Value {
    fn obj(o: Obj) -> Self {
        Self::Obj(Rc::new(RefCell::new(o)))
    }

    /// A short description for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Self::None => "None".into(),
            Self::Bool(_) => "bool".into(),
            Self::Int(_) => "int".into(),
            Self::Float(_) => "float".into(),
            Self::Str(_) => "str".into(),
            Self::Bytes(_) => "bytes".into(),
            Self::Tuple(t) => format!("tuple of {}", t.len()),
            Self::List(l) => format!("list of {}", l.borrow().len()),
            Self::Dict(_) => "dict".into(),
            Self::Global(g) => format!("global {g:?}"),
            Self::Obj(o) => match &*o.borrow() {
                Obj::Instance(i) => format!("{} object", i.class),
                Obj::EmptyArray => "unfinished ndarray".into(),
                Obj::Array(a) => format!("ndarray {:?} {}", a.shape, a.dtype),
                Obj::Dtype(d) => format!("dtype {d}"),
            },
            Self::PersistentId(_) => "persistent id".into(),
            Self::Reduced(g, _) => format!("call of {g:?}"),
        }
    }

    /// A string (UTF-8 bytes from Python 2 `str` accepted).
    pub fn as_str(&self) -> Option<String> {
        match self {
            Self::Str(s) => Some(s.clone()),
            Self::Bytes(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// A number: int, bool, float, or a NumPy scalar / 0-d or one-element array.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Bool(b) => Some(*b as i64 as f64),
            Self::Float(f) => Some(*f),
            Self::Obj(_) => self
                .as_array()
                .filter(|a| a.numel() == 1)
                .and_then(|a| a.to_f32().ok())
                .map(|v| v[0] as f64),
            _ => None,
        }
    }

    /// The elements of a tuple or list.
    pub fn as_seq(&self) -> Option<Vec<Value>> {
        match self {
            Self::Tuple(t) => Some(t.as_ref().clone()),
            Self::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// The items of a dict.
    pub fn as_dict(&self) -> Option<Vec<(Value, Value)>> {
        match self {
            Self::Dict(d) => Some(d.borrow().clone()),
            _ => None,
        }
    }

    /// Looks up a string key in a dict.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.as_dict()?
            .into_iter()
            .find(|(k, _)| k.as_str().as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    /// A finished NumPy array or scalar.
    pub fn as_array(&self) -> Option<NdArray> {
        match self {
            Self::Obj(o) => match &*o.borrow() {
                Obj::Array(a) => Some(a.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// A restored object of an allowed class.
    pub fn as_instance(&self) -> Option<Instance> {
        match self {
            Self::Obj(o) => match &*o.borrow() {
                Obj::Instance(i) => Some(i.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    fn as_dtype(&self) -> Option<Dtype> {
        match self {
            Self::Obj(o) => match &*o.borrow() {
                Obj::Dtype(d) => Some(d.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    fn as_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }

    /// Human-readable rendering of simple values (for reports): numbers, strings, None, bools, short sequences.
    pub fn render(&self) -> String {
        match self {
            Self::None => "None".into(),
            Self::Bool(b) => if *b { "True" } else { "False" }.into(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Str(s) => format!("'{s}'"),
            Self::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) => format!("'{s}'"),
                Err(_) => format!("<{} bytes>", b.len()),
            },
            Self::Tuple(_) | Self::List(_) => {
                let items = self.as_seq().unwrap_or_default();
                let parts: Vec<String> = items.iter().map(Value::render).collect();
                format!("[{}]", parts.join(", "))
            }
            Self::Dict(d) => format!("{{{} items}}", d.borrow().len()),
            other => other.type_name(),
        }
    }
}

/// A loaded pickle: the top-level value, the protocol it declared (0 when it had no PROTO opcode) and its length in
/// bytes up to and including STOP (what follows may be another pickle or data, as in PyTorch's legacy format).
pub struct Loaded {
    pub value: Value,
    pub protocol: u8,
    pub len: usize,
}

/// Reads a pickle file; errors name the file.
pub fn load_file(path: &Path) -> Result<Loaded> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read pickle {}", path.display()))?;
    load(&bytes).with_context(|| format!("{}", path.display()))
}

/// Interprets a pickle held in memory (see the module documentation for what is accepted).
pub fn load(bytes: &[u8]) -> Result<Loaded> {
    load_with(bytes, AllowList::Reference)
}

/// Interprets the pickle at the start of `bytes` under the given allow-list; bytes after its STOP are ignored.
pub fn load_with(bytes: &[u8], allow: AllowList) -> Result<Loaded> {
    let mut m = Machine {
        data: bytes,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        protocol: 0,
        allow,
    };
    let value = m.run()?;
    Ok(Loaded {
        value,
        protocol: m.protocol,
        len: m.pos,
    })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    protocol: u8,
    allow: AllowList,
}

impl Machine<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            bail!(
                "truncated pickle: {what} at byte {} needs {n} bytes, the file ends after {} \
                 (re-download or re-export the file)",
                self.pos,
                self.data.len() - self.pos
            );
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-prefixed payload; the length is checked against the bytes left before anything is allocated.
    fn payload(&mut self, len: u64, what: &str) -> Result<Vec<u8>> {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        Ok(self.take(n, what)?.to_vec())
    }

    /// A newline-terminated argument of a text opcode (protocol 0 style), without the newline.
    fn line(&mut self, what: &str) -> Result<String> {
        let rest = &self.data[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            bail!(
                "truncated pickle: {what} at byte {} has no end of line",
                self.pos
            );
        };
        let s = String::from_utf8_lossy(&rest[..nl]).into_owned();
        self.pos += nl + 1;
        Ok(s.trim_end_matches('\r').to_string())
    }

    fn pop(&mut self, what: &str) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        ensure!(
            self.stack.len() > floor,
            "malformed pickle: {what} at byte {} finds an empty stack",
            self.pos
        );
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self, what: &str) -> Result<&Value> {
        self.stack.last().ok_or_else(|| {
            anyhow!(
                "malformed pickle: {what} at byte {} finds an empty stack",
                self.pos
            )
        })
    }

    /// Pops everything above the last MARK (and the mark).
    fn pop_mark(&mut self, what: &str) -> Result<Vec<Value>> {
        let Some(h) = self.marks.pop() else {
            bail!(
                "malformed pickle: {what} at byte {} without a MARK",
                self.pos
            );
        };
        Ok(self.stack.split_off(h))
    }

    fn memo_get(&self, idx: u32) -> Result<Value> {
        self.memo.get(&idx).cloned().ok_or_else(|| {
            anyhow!(
                "malformed pickle: memo entry {idx} read at byte {} was never stored",
                self.pos
            )
        })
    }

    fn memo_put(&mut self, idx: u32) -> Result<()> {
        let v = self.top("PUT")?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<Value> {
        match Global::lookup(module, name, self.allow) {
            Some(g) => Ok(Value::Global(g)),
            None if self.allow == AllowList::TorchStateDict => bail!(
                "refused to load: the pickle names the global {module}.{name}, which a PyTorch state dict does not \
                 need (a pickle can run arbitrary code through globals; this reader never calls any); if the file \
                 holds a whole pickled model, save model.state_dict() instead"
            ),
            None => bail!(
                "refused to load: the pickle names the global {module}.{name}, which is not one of the NumPy / \
                 dnnlib.tflib.network classes a reference checkpoint uses (a pickle can run arbitrary code through \
                 globals; this reader never calls any)"
            ),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8("an opcode")?;
            match op {
                0x80 => {
                    // PROTO
                    self.protocol = self.u8("PROTO")?;
                    ensure!(
                        self.protocol <= 5,
                        "unsupported pickle protocol {}",
                        self.protocol
                    );
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.u64("FRAME")?;
                }
                b'.' => {
                    // STOP
                    let v = self.pop("STOP")?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop("POP")?;
                }
                b'1' => {
                    self.pop_mark("POP_MARK")?;
                }
                b'2' => {
                    let v = self.top("DUP")?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'I' => {
                    let s = self.line("INT")?;
                    let v = match s.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(
                            s.parse()
                                .map_err(|_| anyhow!("malformed pickle: INT '{s}' at byte {at}"))?,
                        ),
                    };
                    self.stack.push(v);
                }
                b'J' => {
                    let v = self.u32("BININT")? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8("BININT1")?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16("BININT2")?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'L' => {
                    let s = self.line("LONG")?;
                    let v: i64 = s
                        .trim_end_matches('L')
                        .parse()
                        .map_err(|_| anyhow!("unsupported pickle LONG '{s}' at byte {at}"))?;
                    self.stack.push(Value::Int(v));
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement.
                    let n = if op == 0x8a {
                        self.u8("LONG1")? as u64
                    } else {
                        self.u32("LONG4")? as u64
                    };
                    let b = self.payload(n, "LONG")?;
                    ensure!(
                        b.len() <= 8,
                        "unsupported pickle integer of {} bytes at byte {at}",
                        b.len()
                    );
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if !b.is_empty() && b.len() < 8 && b[b.len() - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * b.len());
                    }
                    self.stack.push(Value::Int(v));
                }
                b'F' => {
                    let s = self.line("FLOAT")?;
                    let v: f64 = s
                        .parse()
                        .map_err(|_| anyhow!("malformed pickle: FLOAT '{s}' at byte {at}"))?;
                    self.stack.push(Value::Float(v));
                }
                b'G' => {
                    let b = self.take(8, "BINFLOAT")?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'S' => {
                    let s = self.line("STRING")?;
                    let inner = s
                        .strip_prefix('\'')
                        .and_then(|t| t.strip_suffix('\''))
                        .or_else(|| s.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
                        .ok_or_else(|| anyhow!("malformed pickle: STRING at byte {at}"))?;
                    self.stack.push(Value::Bytes(unescape_py(inner)?));
                }
                b'T' => {
                    let n = self.u32("BINSTRING")? as i32;
                    ensure!(n >= 0, "malformed pickle: negative BINSTRING length");
                    let b = self.payload(n as u64, "BINSTRING")?;
                    self.stack.push(Value::Bytes(b));
                }
                b'U' => {
                    let n = self.u8("SHORT_BINSTRING")? as u64;
                    let b = self.payload(n, "SHORT_BINSTRING")?;
                    self.stack.push(Value::Bytes(b));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    // BINBYTES / SHORT_BINBYTES / BINBYTES8 / BYTEARRAY8
                    let n = match op {
                        b'B' => self.u32("BINBYTES")? as u64,
                        b'C' => self.u8("SHORT_BINBYTES")? as u64,
                        _ => self.u64("BINBYTES8")?,
                    };
                    let b = self.payload(n, "BINBYTES")?;
                    self.stack.push(Value::Bytes(b));
                }
                b'V' => {
                    let s = self.line("UNICODE")?;
                    self.stack.push(Value::Str(unescape_raw_unicode(&s)?));
                }
                b'X' | 0x8c | 0x8d => {
                    // BINUNICODE / SHORT_BINUNICODE / BINUNICODE8
                    let n = match op {
                        b'X' => self.u32("BINUNICODE")? as u64,
                        0x8c => self.u8("SHORT_BINUNICODE")? as u64,
                        _ => self.u64("BINUNICODE8")?,
                    };
                    let b = self.payload(n, "BINUNICODE")?;
                    let s = String::from_utf8(b).map_err(|_| {
                        anyhow!("malformed pickle: invalid UTF-8 in a string at byte {at}")
                    })?;
                    self.stack.push(Value::Str(s));
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark("TUPLE")?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop("TUPLEn")?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b']' => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b'l' => {
                    let items = self.pop_mark("LIST")?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop("APPEND")?;
                    self.extend_list(vec![v], at)?;
                }
                b'e' => {
                    let items = self.pop_mark("APPENDS")?;
                    self.extend_list(items, at)?;
                }
                0x8f => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))), // EMPTY_SET, read as a list
                0x90 => {
                    let items = self.pop_mark("ADDITEMS")?;
                    self.extend_list(items, at)?;
                }
                0x91 => {
                    let items = self.pop_mark("FROZENSET")?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'}' => self
                    .stack
                    .push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b'd' => {
                    let items = self.pop_mark("DICT")?;
                    let d = Value::Dict(Rc::new(RefCell::new(Vec::new())));
                    self.stack.push(d);
                    self.set_items(items, at)?;
                }
                b's' => {
                    let v = self.pop("SETITEM")?;
                    let k = self.pop("SETITEM")?;
                    self.set_items(vec![k, v], at)?;
                }
                b'u' => {
                    let items = self.pop_mark("SETITEMS")?;
                    self.set_items(items, at)?;
                }
                b'g' => {
                    let s = self.line("GET")?;
                    let i = s
                        .parse()
                        .map_err(|_| anyhow!("malformed pickle: GET '{s}' at byte {at}"))?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'h' => {
                    let i = self.u8("BINGET")? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32("LONG_BINGET")?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'p' => {
                    let s = self.line("PUT")?;
                    let i = s
                        .parse()
                        .map_err(|_| anyhow!("malformed pickle: PUT '{s}' at byte {at}"))?;
                    self.memo_put(i)?;
                }
                b'q' => {
                    let i = self.u8("BINPUT")? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32("LONG_BINPUT")?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                b'c' => {
                    let module = self.line("GLOBAL")?;
                    let name = self.line("GLOBAL")?;
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                0x93 => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                        bail!("malformed pickle: STACK_GLOBAL at byte {at} needs two strings");
                    };
                    let g = self.global(&module, &name)?;
                    self.stack.push(g);
                }
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let func = self.pop("REDUCE")?;
                    let v = self.reduce(func, args, at)?;
                    self.stack.push(v);
                }
                0x81 | 0x92 => {
                    // NEWOBJ / NEWOBJ_EX: cls.__new__(cls, *args[, **kwargs]).
                    if op == 0x92 {
                        self.pop("NEWOBJ_EX")?;
                    }
                    let _args = self.pop("NEWOBJ")?;
                    let cls = self.pop("NEWOBJ")?;
                    let v = self.new_object(&cls, at)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop("BUILD")?;
                    let target = self.top("BUILD")?.clone();
                    self.build(&target, state, at)?;
                }
                b'i' | b'o' => bail!(
                    "unsupported pickle opcode {} at byte {at} (protocol 0/1 INST/OBJ); re-save the file with \
                     protocol 2 or later",
                    if op == b'i' { "INST" } else { "OBJ" }
                ),
                b'Q' if self.allow == AllowList::TorchStateDict => {
                    let pid = self.pop("BINPERSID")?;
                    self.stack.push(Value::PersistentId(Rc::new(pid)));
                }
                b'P' if self.allow == AllowList::TorchStateDict => {
                    let pid = self.line("PERSID")?;
                    self.stack
                        .push(Value::PersistentId(Rc::new(Value::Str(pid))));
                }
                b'P' | b'Q' => {
                    bail!("refused to load: persistent IDs (opcode at byte {at}) are not supported")
                }
                0x82..=0x84 => {
                    bail!("refused to load: the copyreg extension registry (EXT opcode at byte {at}) is not supported")
                }
                0x97 | 0x98 => {
                    bail!("unsupported pickle opcode at byte {at}: protocol 5 out-of-band buffers")
                }
                _ => bail!("malformed pickle: unknown opcode 0x{op:02x} at byte {at}"),
            }
        }
    }

    fn extend_list(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        match self.top("APPENDS")? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => bail!(
                "malformed pickle: APPEND(S) at byte {at} on a {}",
                other.type_name()
            ),
        }
    }

    fn set_items(&mut self, items: Vec<Value>, at: usize) -> Result<()> {
        ensure!(
            items.len().is_multiple_of(2),
            "malformed pickle: SETITEMS at byte {at} with an odd number of items"
        );
        match self.top("SETITEMS")? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    // Same key again (by string or int) replaces, as in Python.
                    let key_eq = |a: &Value| match (a, &k) {
                        (Value::Int(x), Value::Int(y)) => x == y,
                        _ => a.as_str().is_some() && a.as_str() == k.as_str(),
                    };
                    if let Some(slot) = d.iter_mut().find(|(a, _)| key_eq(a)) {
                        slot.1 = v;
                    } else {
                        d.push((k, v));
                    }
                }
                Ok(())
            }
            other => bail!(
                "malformed pickle: SETITEM(S) at byte {at} on a {}",
                other.type_name()
            ),
        }
    }

    fn new_object(&self, cls: &Value, at: usize) -> Result<Value> {
        match cls {
            Value::Global(Global::Network) => Ok(Value::obj(Obj::Instance(Instance {
                class: "dnnlib.tflib.network.Network".into(),
                state: None,
            }))),
            Value::Global(Global::DictClass) => Ok(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            other => bail!(
                "malformed pickle: NEWOBJ at byte {at} on a {}, expected an allowed class",
                other.type_name()
            ),
        }
    }

    /// `func(*args)` for the allowed globals, computed as data.
    fn reduce(&self, func: Value, args: Value, at: usize) -> Result<Value> {
        let Value::Global(g) = func else {
            bail!(
                "malformed pickle: REDUCE at byte {at} calls a {}",
                func.type_name()
            );
        };
        let args = args.as_seq().ok_or_else(|| {
            anyhow!("malformed pickle: REDUCE at byte {at} without an argument tuple")
        })?;
        match g {
            Global::NdarrayReconstruct => {
                // _reconstruct(ndarray, (0,), b'b'): an empty array that BUILD fills.
                ensure!(
                    matches!(args.first(), Some(Value::Global(Global::Ndarray))),
                    "unsupported pickle: _reconstruct at byte {at} of a class other than numpy.ndarray"
                );
                Ok(Value::obj(Obj::EmptyArray))
            }
            Global::Dtype => {
                let descr = args.first().and_then(Value::as_str).ok_or_else(|| {
                    anyhow!("malformed pickle: numpy.dtype at byte {at} without a type string")
                })?;
                Ok(Value::obj(Obj::Dtype(Dtype::parse(&descr)?)))
            }
            Global::NumpyScalar => {
                ensure!(
                    args.len() == 2,
                    "malformed pickle: numpy scalar at byte {at} needs (dtype, bytes)"
                );
                let dtype = args[0].as_dtype().ok_or_else(|| {
                    anyhow!("malformed pickle: numpy scalar at byte {at} without a dtype")
                })?;
                let data = args[1].as_bytes().ok_or_else(|| {
                    anyhow!(
                        "unsupported pickle: numpy scalar at byte {at} of a non-numeric dtype (got {})",
                        args[1].type_name()
                    )
                })?;
                ensure!(
                    data.len() == dtype.itemsize,
                    "malformed pickle: numpy scalar at byte {at} has {} bytes for dtype {dtype}",
                    data.len()
                );
                Ok(Value::obj(Obj::Array(NdArray {
                    shape: Vec::new(),
                    dtype,
                    fortran_order: false,
                    data,
                })))
            }
            Global::CodecsEncode => {
                // encode(text, 'latin1'): each code point < 256 is one byte.
                let text = args.first().and_then(Value::as_str).ok_or_else(|| {
                    anyhow!("malformed pickle: _codecs.encode at byte {at} without a string")
                })?;
                let enc = args
                    .get(1)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| "utf-8".into());
                match enc.to_ascii_lowercase().replace('_', "-").as_str() {
                    "latin1" | "latin-1" | "iso-8859-1" => {
                        let mut out = Vec::with_capacity(text.len());
                        for ch in text.chars() {
                            let c = ch as u32;
                            ensure!(
                                c < 256,
                                "malformed pickle: latin-1 bytes at byte {at} hold U+{c:04X}"
                            );
                            out.push(c as u8);
                        }
                        Ok(Value::Bytes(out))
                    }
                    "utf-8" | "utf8" => Ok(Value::Bytes(text.into_bytes())),
                    other => bail!("unsupported pickle: _codecs.encode with encoding '{other}'"),
                }
            }
            Global::CopyregReconstructor => match args.first() {
                Some(cls @ Value::Global(Global::Network | Global::DictClass)) => {
                    self.new_object(cls, at)
                }
                _ => bail!("unsupported pickle: copyreg._reconstructor at byte {at} of a non-allowed class"),
            },
            Global::DictClass => {
                // OrderedDict() / OrderedDict([(k, v), …])
                let d = Value::Dict(Rc::new(RefCell::new(Vec::new())));
                if let Some(items) = args.first().and_then(Value::as_seq) {
                    if let Value::Dict(inner) = &d {
                        for kv in items {
                            let pair = kv.as_seq().filter(|p| p.len() == 2).ok_or_else(|| {
                                anyhow!("malformed pickle: OrderedDict items at byte {at}")
                            })?;
                            inner.borrow_mut().push((pair[0].clone(), pair[1].clone()));
                        }
                    }
                }
                Ok(d)
            }
            Global::TorchRebuildTensor | Global::TorchRebuildParameter => {
                Ok(Value::Reduced(g, Rc::new(args)))
            }
            Global::Network | Global::Ndarray | Global::Object | Global::TorchStorage(_) => bail!(
                "unsupported pickle: REDUCE at byte {at} calls {g:?} directly (expected NEWOBJ + BUILD)"
            ),
        }
    }

    /// `obj.__setstate__(state)` for the objects we know.
    fn build(&self, target: &Value, state: Value, at: usize) -> Result<()> {
        match target {
            Value::Obj(o) => {
                let mut o = o.borrow_mut();
                match &mut *o {
                    Obj::Instance(inst) => {
                        // (state, slotstate) from objects with __slots__: keep the dict part.
                        let state = match &state {
                            Value::Tuple(t) if t.len() == 2 && matches!(t[0], Value::Dict(_)) => {
                                t[0].clone()
                            }
                            _ => state,
                        };
                        inst.state = Some(state);
                    }
                    Obj::EmptyArray => *o = Obj::Array(array_from_state(&state, at)?),
                    Obj::Dtype(d) => {
                        // (version, byteorder, …): '>' is big-endian; '<', '|', '=' are little on every host we run.
                        if let Some(order) = state
                            .as_seq()
                            .and_then(|s| s.get(1).and_then(Value::as_str))
                        {
                            d.little_endian = order != ">";
                        }
                    }
                    Obj::Array(_) => {
                        bail!("malformed pickle: BUILD at byte {at} on a finished array")
                    }
                }
                Ok(())
            }
            Value::Dict(d) => {
                // A dict subclass's instance __dict__: merge (EasyDict keeps nothing there).
                if let Some(items) = state.as_dict() {
                    d.borrow_mut().extend(items);
                }
                Ok(())
            }
            other => bail!(
                "malformed pickle: BUILD at byte {at} on a {}",
                other.type_name()
            ),
        }
    }
}

/// The ndarray BUILD state: `(version, shape, dtype, is_fortran, rawdata)` (or the older 4-tuple without version).
fn array_from_state(state: &Value, at: usize) -> Result<NdArray> {
    let s = state
        .as_seq()
        .ok_or_else(|| anyhow!("malformed pickle: ndarray state at byte {at} is not a tuple"))?;
    let s = match s.len() {
        5 => &s[1..],
        4 => &s[..],
        n => bail!("malformed pickle: ndarray state at byte {at} has {n} fields"),
    };
    let shape = s[0]
        .as_seq()
        .ok_or_else(|| anyhow!("malformed pickle: ndarray shape at byte {at}"))?
        .iter()
        .map(|d| {
            d.as_i64()
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| anyhow!("malformed pickle: ndarray dimension at byte {at}"))
        })
        .collect::<Result<Vec<usize>>>()?;
    let dtype = s[1]
        .as_dtype()
        .ok_or_else(|| anyhow!("malformed pickle: ndarray without a dtype at byte {at}"))?;
    let fortran_order = matches!(s[2], Value::Bool(true) | Value::Int(1));
    let data = s[3].as_bytes().ok_or_else(|| {
        anyhow!(
            "unsupported pickle: ndarray data at byte {at} is a {} (object arrays are not supported)",
            s[3].type_name()
        )
    })?;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| anyhow!("malformed pickle: ndarray shape {shape:?} overflows"))?;
    ensure!(
        numel.checked_mul(dtype.itemsize) == Some(data.len()),
        "malformed pickle: ndarray of shape {shape:?} and dtype {dtype} at byte {at} holds {} bytes",
        data.len()
    );
    Ok(NdArray {
        shape,
        dtype,
        fortran_order,
        data,
    })
}

/// Python 2 `repr(str)` escapes (STRING opcode).
fn unescape_py(s: &str) -> Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b
            .get(i + 1)
            .ok_or_else(|| anyhow!("malformed pickle STRING escape"))?;
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'x' => {
                let hex = s
                    .get(i..i + 2)
                    .ok_or_else(|| anyhow!("malformed pickle STRING escape"))?;
                out.push(
                    u8::from_str_radix(hex, 16)
                        .map_err(|_| anyhow!("malformed pickle STRING escape"))?,
                );
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                let mut k = 0;
                while k < 2 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + (b[i] - b'0') as u32;
                    i += 1;
                    k += 1;
                }
                out.push(v as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// `raw-unicode-escape` (UNICODE opcode): only `\uXXXX` and `\UXXXXXXXX` are escapes.
fn unescape_raw_unicode(s: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('u' | 'U')) {
            let n = if chars.next() == Some('u') { 4 } else { 8 };
            let hex: String = chars.by_ref().take(n).collect();
            let v = u32::from_str_radix(&hex, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| anyhow!("malformed pickle UNICODE escape"))?;
            out.push(v);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps(np.arange(6, dtype=np.float32).reshape(2, 3), protocol=2)` as NumPy 2 writes it: protocol 2
    /// stores the raw bytes as `_codecs.encode(<latin-1 text>, 'latin1')`.
    fn proto2_array() -> Vec<u8> {
        let mut p = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\t(K\x01K\x02K\x03\x86q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00f4q\x0c\x89\x88\x87q\rRq\x0e(K\x03X\x01\x00\x00\x00<q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89h\x03X".to_vec();
        // 24 bytes of float32 0..5 as latin-1 text: bytes ≥ 0x80 become 2-byte UTF-8 sequences.
        let raw: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let text: String = raw.iter().map(|&b| b as char).collect();
        p.extend((text.len() as u32).to_le_bytes());
        p.extend(text.as_bytes());
        p.extend(b"q\x11h\x05\x86q\x12Rq\x13tq\x14b.");
        p
    }

    #[test]
    fn protocol2_numpy_array_through_codecs_encode() {
        let v = load(&proto2_array()).unwrap();
        assert_eq!(v.protocol, 2);
        let a = v.value.as_array().expect("an array");
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.to_f32().unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn dtype_conversions_and_fortran_order() {
        let mk = |descr: &str, data: Vec<u8>, shape: Vec<usize>, fortran: bool| NdArray {
            shape,
            dtype: Dtype::parse(descr).unwrap(),
            fortran_order: fortran,
            data,
        };
        let f64s: Vec<u8> = [1.5f64, -2.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            mk("<f8", f64s, vec![2], false).to_f32().unwrap(),
            vec![1.5, -2.25]
        );
        let be: Vec<u8> = [3.0f32, -1.0]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(
            mk(">f4", be, vec![2], false).to_f32().unwrap(),
            vec![3.0, -1.0]
        );
        // f16: 1.0 = 0x3c00, -2.0 = 0xc000, 2^-24 (smallest subnormal) = 0x0001.
        let h: Vec<u8> = [0x3c00u16, 0xc000, 0x0001]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            mk("f2", h, vec![3], false).to_f32().unwrap(),
            vec![1.0, -2.0, 2f32.powi(-24)]
        );
        let i: Vec<u8> = [-3i16, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            mk("i2", i, vec![2], false).to_f32().unwrap(),
            vec![-3.0, 7.0]
        );
        // Fortran [[0, 1, 2], [3, 4, 5]] is stored column by column: 0 3 1 4 2 5.
        let f: Vec<u8> = [0f32, 3., 1., 4., 2., 5.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            mk("f4", f, vec![2, 3], true).to_f32().unwrap(),
            vec![0., 1., 2., 3., 4., 5.]
        );
        assert!(Dtype::parse("O8").is_err());
        assert!(Dtype::parse("U10").is_err());
    }

    #[test]
    fn protocol0_text_opcodes() {
        // pickle.dumps({'a': [1, 2.5, 'x'], 'b': (True, None)}, protocol=0)
        let p = b"(dp0\nVa\np1\n(lp2\nI1\naF2.5\naVx\np3\nasVb\np4\n(I01\nNtp5\ns.";
        let v = load(p).unwrap().value;
        let a = v.get("a").unwrap().as_seq().unwrap();
        assert_eq!(a[0].as_i64(), Some(1));
        assert_eq!(a[1].as_f64(), Some(2.5));
        assert_eq!(a[2].as_str().as_deref(), Some("x"));
        let b = v.get("b").unwrap().as_seq().unwrap();
        assert!(matches!(b[0], Value::Bool(true)));
        assert!(matches!(b[1], Value::None));
    }

    #[test]
    fn refuses_globals_outside_the_allow_list() {
        for (module, name) in [
            ("os", "system"),
            ("builtins", "eval"),
            ("subprocess", "Popen"),
            ("posix", "system"),
            ("numpy", "load"),
        ] {
            let mut p = b"\x80\x02c".to_vec();
            p.extend(format!("{module}\n{name}\n").bytes());
            p.extend(b"X\x02\x00\x00\x00lsq\x00\x85R.");
            let err = format!("{:#}", load(&p).err().unwrap());
            assert!(err.contains(&format!("{module}.{name}")), "{err}");
            assert!(err.contains("refused"), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let full = proto2_array();
        for cut in 0..full.len() {
            let r = load(&full[..cut]);
            assert!(r.is_err(), "prefix of {cut} bytes loaded");
        }
        let err = format!("{:#}", load(&full[..full.len() / 2]).err().unwrap());
        assert!(err.contains("truncated"), "{err}");
        // A length field far beyond the end must not allocate it.
        let huge = b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f";
        assert!(format!("{:#}", load(huge).err().unwrap()).contains("truncated"));
        for junk in [&b"\xff"[..], b"\x80\x02t.", b"\x80\x02h\x05.", b"\x80\x02."] {
            assert!(load(junk).is_err());
        }
    }

    #[test]
    fn torch_flavour_records_persistent_ids_and_rebuild_calls_only() {
        // _rebuild_tensor_v2(<pid ('storage', torch.cuda.HalfStorage, '0', 'cuda:0', 2)>, 0, (2,), (1,)), then STOP
        // with the length of the pickle reported and a trailing byte ignored.
        let p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch.cuda\nHalfStorage\nX\x01\x00\x00\x000X\x06\x00\x00\x00cuda:0K\x02tQK\x00K\x02\x85K\x01\x85tR.\xff";
        let l = load_with(p, AllowList::TorchStateDict).unwrap();
        assert_eq!(l.len, p.len() - 1);
        let Value::Reduced(Global::TorchRebuildTensor, args) = &l.value else {
            panic!("{}", l.value.type_name());
        };
        let Value::PersistentId(pid) = &args[0] else {
            panic!("{}", args[0].type_name());
        };
        let pid = pid.as_seq().unwrap();
        assert!(matches!(
            pid[1],
            Value::Global(Global::TorchStorage("Half"))
        ));
        // The reference flavour refuses the torch globals and persistent ids; the torch flavour refuses NumPy.
        let err = format!("{:#}", load(p).err().unwrap());
        assert!(err.contains("torch._utils._rebuild_tensor_v2"), "{err}");
        let np = b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f4\x85R.";
        assert!(load(np).is_ok());
        let err = format!(
            "{:#}",
            load_with(np, AllowList::TorchStateDict).err().unwrap()
        );
        assert!(
            err.contains("numpy.dtype") && err.contains("state_dict()"),
            "{err}"
        );
        for bad in ["FloatTensor", "Storage", "load", "UntypedStorage"] {
            let mut q = b"\x80\x02ctorch\n".to_vec();
            q.extend(format!("{bad}\n.").bytes());
            let err = format!(
                "{:#}",
                load_with(&q, AllowList::TorchStateDict).err().unwrap()
            );
            assert!(err.contains(&format!("torch.{bad}")), "{err}");
        }
    }
}
