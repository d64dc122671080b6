//! The subset of NumPy's `.npy` format the datasets use: version 1.0, C order, `|u1` (uint8) or `<f4` (float32);
//! and `.npz` archives of float64 arrays (cached statistics).
//!
//! Files are written as a stream: a fixed-size header with room for any shape is written first and rewritten with
//! the final count when the stream ends, so images never have to be held in memory. Any NumPy reads them
//! (`np.load(path, mmap_mode="r")`).

use anyhow::{bail, ensure, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Total header size of the files we write (magic, version, length, dict, padding): a multiple of 64 as NumPy
/// recommends, large enough for a 4-d shape with 12-digit dimensions.
pub const HEADER_LEN: usize = 128;

/// Element types used by the datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    U8,
    F32,
    F64,
}

impl Dtype {
    fn descr(self) -> &'static str {
        match self {
            Dtype::U8 => "|u1",
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }
    /// NumPy's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::U8 => "uint8",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

fn header_bytes(dtype: Dtype, shape: &[u64]) -> Result<Vec<u8>> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_str = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        dtype.descr(),
        shape_str
    );
    ensure!(
        10 + dict.len() < HEADER_LEN,
        "npy header too long for shape {shape:?}"
    );
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&((HEADER_LEN - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(HEADER_LEN - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

/// Streams rows of a `[N, ..row_shape]` array to a file; N is known only at [`NpyWriter::finish`].
pub struct NpyWriter {
    path: PathBuf,
    out: BufWriter<File>,
    dtype: Dtype,
    row_shape: Vec<u64>,
    row_bytes: usize,
    rows: u64,
}

impl NpyWriter {
    pub fn create(path: &Path, dtype: Dtype, row_shape: &[u64]) -> Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut shape = vec![0];
        shape.extend_from_slice(row_shape);
        out.write_all(&header_bytes(dtype, &shape)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let row_bytes = row_shape.iter().product::<u64>() as usize * dtype.size();
        Ok(NpyWriter {
            path: path.to_path_buf(),
            out,
            dtype,
            row_shape: row_shape.to_vec(),
            row_bytes,
            rows: 0,
        })
    }

    /// Appends one row given as raw little-endian bytes of the right length.
    pub fn push_bytes(&mut self, row: &[u8]) -> Result<()> {
        ensure!(
            row.len() == self.row_bytes,
            "{}: row of {} bytes, expected {}",
            self.path.display(),
            row.len(),
            self.row_bytes
        );
        self.out
            .write_all(row)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.rows += 1;
        Ok(())
    }

    /// Appends one float32 row.
    pub fn push_f32(&mut self, row: &[f32]) -> Result<()> {
        ensure!(self.dtype == Dtype::F32, "push_f32 on a non-float file");
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_bytes(&bytes)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes the data and writes the final header; returns the number of rows.
    pub fn finish(self) -> Result<u64> {
        let ctx = || format!("cannot write {}", self.path.display());
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(ctx)?;
        let mut shape = vec![self.rows];
        shape.extend_from_slice(&self.row_shape);
        file.seek(SeekFrom::Start(0)).with_context(ctx)?;
        file.write_all(&header_bytes(self.dtype, &shape)?)
            .with_context(ctx)?;
        file.sync_all().with_context(ctx)?;
        Ok(self.rows)
    }
}

/// Float64 arrays `(name, shape, values)` as the bytes of an uncompressed `.npz`, what `np.savez` writes: one
/// `<name>.npy` entry per array. Built in memory, so that writing it (with [`crate::io::fs::write_bytes_atomic`]) is
/// one step whose failure (a full disk) is an error, never an archive without its central directory.
pub fn npz_f64_bytes(arrays: &[(&str, &[u64], &[f64])]) -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for &(name, shape, values) in arrays {
        ensure!(
            shape.iter().product::<u64>() == values.len() as u64,
            "{name}: {} values for shape {shape:?}",
            values.len()
        );
        let mut entry = header_bytes(Dtype::F64, shape)?;
        entry.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        zip.start_file(format!("{name}.npy"), options)?;
        zip.write_all(&entry)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// A parsed `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Byte offset of the data.
    pub data_offset: usize,
}

impl NpyHeader {
    pub fn data_bytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.dtype.size() as u64
    }
}

/// Parses the header at the start of `bytes` (which must hold at least the whole header).
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader> {
    ensure!(
        bytes.len() >= 10 && &bytes[..6] == MAGIC,
        "not a .npy file (bad magic)"
    );
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated .npy header");
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => bail!("unsupported .npy version {v}"),
    };
    ensure!(bytes.len() >= start + len, "truncated .npy header");
    let dict = std::str::from_utf8(&bytes[start..start + len]).context("non-text .npy header")?;
    let field = |key: &str| -> Result<&str> {
        let pat = format!("'{key}':");
        let at = dict
            .find(&pat)
            .with_context(|| format!(".npy header lacks '{key}'"))?;
        Ok(dict[at + pat.len()..].trim_start())
    };
    let descr = field("descr")?;
    let dtype = if descr.starts_with("'|u1'") || descr.starts_with("'u1'") {
        Dtype::U8
    } else if descr.starts_with("'<f4'") {
        Dtype::F32
    } else if descr.starts_with("'<f8'") {
        Dtype::F64
    } else {
        bail!(
            "unsupported .npy dtype {}",
            descr.split(',').next().unwrap_or("")
        )
    };
    ensure!(
        field("fortran_order")?.starts_with("False"),
        "Fortran-order .npy files are not supported"
    );
    let shape_str = field("shape")?;
    ensure!(shape_str.starts_with('('), "bad .npy shape");
    let end = shape_str.find(')').context("bad .npy shape")?;
    let shape = shape_str[1..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().context("bad .npy shape"))
        .collect::<Result<Vec<u64>>>()?;
    Ok(NpyHeader {
        dtype,
        shape,
        data_offset: start + len,
    })
}

/// Reads the header of the file at `path`.
pub fn read_header(path: &Path) -> Result<NpyHeader> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    parse_header(&buf[..n]).with_context(|| format!("{}", path.display()))
}

/// Reads a whole float32 `.npy` file (small files only: factors).
pub fn read_f32(path: &Path) -> Result<(Vec<u64>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let h = parse_header(&bytes).with_context(|| format!("{}", path.display()))?;
    ensure!(
        h.dtype == Dtype::F32,
        "{}: expected float32 data",
        path.display()
    );
    ensure!(
        (bytes.len() - h.data_offset) as u64 == h.data_bytes(),
        "{}: file size does not match its shape {:?} (truncated?)",
        path.display(),
        h.shape
    );
    let data = bytes[h.data_offset..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((h.shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npz_of_float64_arrays_reads_back_with_tch() {
        let dir = std::env::temp_dir().join(format!("hg-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.npz");
        let mu = [1.5, -2.0, 1e-300];
        let sigma: Vec<f64> = (0..6).map(|i| i as f64 / 7.0).collect();
        let bytes = npz_f64_bytes(&[("mu", &[3], &mu), ("sigma", &[2, 3], &sigma)]).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let read = tch::Tensor::read_npz(&path).unwrap();
        let names: Vec<&str> = read.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["mu", "sigma"]);
        assert_eq!(read[0].1.kind(), tch::Kind::Double);
        assert_eq!(read[1].1.size(), [2, 3]);
        assert_eq!(Vec::<f64>::try_from(&read[0].1).unwrap(), mu);
        assert_eq!(
            Vec::<f64>::try_from(read[1].1.flatten(0, -1)).unwrap(),
            sigma
        );
        assert!(npz_f64_bytes(&[("x", &[4], &mu)]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn header_round_trip_and_alignment() {
        for shape in [vec![0u64, 3, 4, 4], vec![737_280, 1, 64, 64], vec![5]] {
            let b = header_bytes(Dtype::U8, &shape).unwrap();
            assert_eq!(b.len(), HEADER_LEN);
            assert_eq!(b.len() % 64, 0);
            let h = parse_header(&b).unwrap();
            assert_eq!(h.shape, shape);
            assert_eq!(h.dtype, Dtype::U8);
            assert_eq!(h.data_offset, HEADER_LEN);
        }
        // A header as NumPy itself writes it.
        let np = b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (10, 4), }";
        let mut v = np.to_vec();
        v.resize(128 - 1, b' ');
        v.push(b'\n');
        let h = parse_header(&v).unwrap();
        assert_eq!((h.dtype, h.shape), (Dtype::F32, vec![10, 4]));
        assert!(parse_header(b"PK\x03\x04 not npy").is_err());
    }

    #[test]
    fn streamed_file_has_final_shape() {
        let dir = std::env::temp_dir().join(format!("hg-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.npy");
        let mut w = NpyWriter::create(&p, Dtype::F32, &[2]).unwrap();
        w.push_f32(&[1.0, 2.5]).unwrap();
        w.push_f32(&[-3.0, 4.0]).unwrap();
        assert!(w.push_f32(&[1.0]).is_err());
        assert_eq!(w.finish().unwrap(), 2);
        let (shape, data) = read_f32(&p).unwrap();
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(data, vec![1.0, 2.5, -3.0, 4.0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
