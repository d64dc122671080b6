//! The reference's dataset files, `<name>-rXX.tfrecords` (docs/spec/progan_hp.md §2.9): read, write and find them.
//!
//! A TFRecord file is a sequence of records, each
//! `u64 length (LE) | u32 masked CRC32C of those 8 bytes | data | u32 masked CRC32C of data`,
//! with no file header or footer. Each record's data is a serialized `tf.train.Example` whose `features` map holds
//! `shape` (an int64 list `[C, H, W]`) and `data` (a bytes list with one value: the uint8 image in CHW order).
//!
//! The protobuf messages involved are tiny and fixed, so they are decoded by hand below (wire types 0, 1, 2, 5;
//! packed or unpacked int64 lists; unknown fields and other features skipped) rather than through generated code.

use anyhow::{bail, ensure, Context, Result};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// TFRecord's CRC mask: rotate right by 15 bits and add a constant, so that a CRC of data containing CRCs stays
/// well distributed.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One image of a reference dataset: `shape` = `[C, H, W]`, `data` = `C·H·W` bytes in CHW order.
pub type Image = ([u64; 3], Vec<u8>);

/// Streams the images of one `.tfrecords` file, checking both CRCs of every record. Yields `Err` once (with the
/// file and record index) on corruption or truncation, then stops.
pub struct TfRecordReader {
    path: PathBuf,
    reader: BufReader<File>,
    file_len: u64,
    /// Byte offset of the next record.
    offset: u64,
    /// Index of the next record.
    index: u64,
    done: bool,
}

impl TfRecordReader {
    pub fn open(path: &Path) -> Result<TfRecordReader> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let file_len = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        Ok(TfRecordReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            file_len,
            offset: 0,
            index: 0,
            done: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records read so far.
    pub fn records_read(&self) -> u64 {
        self.index
    }

    /// The next record's payload (CRC-checked), or `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_record();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn read_record(&mut self) -> Result<Option<Vec<u8>>> {
        let mut header = [0u8; 12];
        let got = read_full(&mut self.reader, &mut header)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            bail!(self.truncated(12, got as u64));
        }
        let len = check_header(&header).map_err(|e| anyhow::anyhow!(self.corrupt(&e)))?;
        let available = self.file_len - self.offset - 12;
        if len.saturating_add(4) > available {
            bail!(self.truncated(12 + len + 4, 12 + available));
        }
        let mut data = vec![0u8; len as usize];
        let mut footer = [0u8; 4];
        let got = read_full(&mut self.reader, &mut data)
            .and_then(|n| Ok(n + read_full(&mut self.reader, &mut footer)?))
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        if (got as u64) < len + 4 {
            // The file shrank while we read it.
            bail!(self.truncated(12 + len + 4, 12 + got as u64));
        }
        let stored = u32::from_le_bytes(footer);
        let computed = masked_crc32c(&data);
        if stored != computed {
            bail!(self.corrupt(&format!(
                "data CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        self.offset += 12 + len + 4;
        self.index += 1;
        Ok(Some(data))
    }

    fn truncated(&self, needed: u64, present: u64) -> String {
        format!(
            "{}: truncated in record {} at byte {}: the record needs {needed} bytes but the file ends after {present}; \
             the file is incomplete, download or copy it again",
            self.path.display(),
            self.index,
            self.offset
        )
    }

    fn corrupt(&self, what: &str) -> String {
        format!(
            "{}: record {} at byte {}: {what}; the file is corrupt, download or copy it again",
            self.path.display(),
            self.index,
            self.offset
        )
    }
}

impl Iterator for TfRecordReader {
    type Item = Result<Image>;

    fn next(&mut self) -> Option<Result<Image>> {
        let record = match self.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let result = decode_example_into(record).map_err(|e| {
            self.done = true;
            anyhow::anyhow!("{}: record {}: {e}", self.path.display(), self.index - 1)
        });
        Some(result)
    }
}

/// Reads until `buf` is full or the reader ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The payload length from a record header, after checking the header's CRC.
fn check_header(header: &[u8; 12]) -> std::result::Result<u64, String> {
    let len_bytes: [u8; 8] = header[..8].try_into().expect("8 bytes");
    let stored = u32::from_le_bytes(header[8..].try_into().expect("4 bytes"));
    let computed = masked_crc32c(&len_bytes);
    if stored != computed {
        return Err(format!(
            "length CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    Ok(u64::from_le_bytes(len_bytes))
}

/// Number of records in a `.tfrecords` file, from the record headers alone (length CRCs checked, payloads skipped):
/// what an importer needs to size its output before reading the images.
pub fn count_records(path: &Path) -> Result<u64> {
    let mut reader = TfRecordReader::open(path)?;
    loop {
        let mut header = [0u8; 12];
        let got = read_full(&mut reader.reader, &mut header)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if got == 0 {
            return Ok(reader.index);
        }
        if got < header.len() {
            bail!(reader.truncated(12, got as u64));
        }
        let len = check_header(&header).map_err(|e| anyhow::anyhow!(reader.corrupt(&e)))?;
        let available = reader.file_len - reader.offset - 12;
        if len.saturating_add(4) > available {
            bail!(reader.truncated(12 + len + 4, 12 + available));
        }
        // seek_relative keeps BufReader's buffer when the skip lands inside it (a plain seek would discard it).
        let skip = i64::try_from(len + 4).expect("bounded by the file length");
        reader
            .reader
            .seek_relative(skip)
            .with_context(|| format!("cannot read {}", path.display()))?;
        reader.offset += 12 + len + 4;
        reader.index += 1;
    }
}

/// Frames payloads as TFRecords.
pub struct TfRecordWriter<W: Write> {
    out: W,
    count: u64,
}

impl<W: Write> TfRecordWriter<W> {
    pub fn new(out: W) -> Self {
        TfRecordWriter { out, count: 0 }
    }

    /// Writes one record with its two CRCs.
    pub fn write_record(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let len = (payload.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc32c(&len).to_le_bytes())?;
        self.out.write_all(payload)?;
        self.out.write_all(&masked_crc32c(payload).to_le_bytes())?;
        self.count += 1;
        Ok(())
    }

    /// Writes one image as a `tf.train.Example` record (as the reference's `TFRecordExporter` does).
    pub fn write_image(&mut self, shape: [u64; 3], data: &[u8]) -> Result<()> {
        let payload = encode_example(shape, data)?;
        self.write_record(&payload)?;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// Writes `images` (each `([C, H, W], CHW bytes)`) to one `.tfrecords` file, atomically (temporary name, then
/// rename). Returns the number of records.
pub fn write_tfrecords<I, T>(path: &Path, images: I) -> Result<u64>
where
    I: IntoIterator<Item = ([u64; 3], T)>,
    T: AsRef<[u8]>,
{
    let mut count = 0;
    crate::io::fs::write_atomic(path, |tmp| {
        let file = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut writer = TfRecordWriter::new(BufWriter::with_capacity(1 << 20, file));
        for (shape, data) in images {
            writer
                .write_image(shape, data.as_ref())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        count = writer.count();
        writer
            .into_inner()
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))
    })?;
    Ok(count)
}

// ---- tf.train.Example, by hand -------------------------------------------------------------------------------
//
// message Example   { Features features = 1; }
// message Features  { map<string, Feature> feature = 1; }     // entries: { string key = 1; Feature value = 2; }
// message Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
// message BytesList { repeated bytes value = 1; }
// message Int64List { repeated int64 value = 1 [packed = true]; }

/// Serializes a `tf.train.Example` with the features `shape` = `[C, H, W]` and `data` = the image bytes.
pub fn encode_example(shape: [u64; 3], data: &[u8]) -> Result<Vec<u8>> {
    let expected = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n == data.len() as u64);
    ensure!(
        expected.is_some(),
        "image of shape {shape:?} needs {} bytes, got {}",
        shape.iter().map(|&d| d as u128).product::<u128>(),
        data.len()
    );
    let mut packed = Vec::new();
    for d in shape {
        put_varint(&mut packed, d);
    }
    let int64_list = field_bytes(1, &packed);
    let shape_feature = field_bytes(3, &int64_list);
    let bytes_list = field_bytes(1, data);
    let data_feature = field_bytes(1, &bytes_list);
    let mut features = Vec::with_capacity(data.len() + 64);
    for (key, value) in [("shape", &shape_feature), ("data", &data_feature)] {
        let mut entry = field_bytes(1, key.as_bytes());
        entry.extend_from_slice(&field_bytes(2, value));
        features.extend_from_slice(&field_bytes(1, &entry));
    }
    Ok(field_bytes(1, &features))
}

/// Decodes a serialized `tf.train.Example` into `([C, H, W], CHW bytes)`.
pub fn decode_example(bytes: &[u8]) -> Result<Image> {
    decode_example_into(bytes.to_vec())
}

/// [`decode_example`] reusing the record's buffer for the image bytes (no second allocation per image).
fn decode_example_into(mut record: Vec<u8>) -> Result<Image> {
    let (shape, range) = parse_example(&record)?;
    record.copy_within(range.clone(), 0);
    record.truncate(range.len());
    Ok((shape, record))
}

/// Finds `shape` and the byte range of `data` inside a serialized Example.
fn parse_example(bytes: &[u8]) -> Result<([u64; 3], std::ops::Range<usize>)> {
    let mut shape: Option<Vec<u64>> = None;
    let mut data: Option<std::ops::Range<usize>> = None;
    for field in Fields::new(bytes, 0..bytes.len()) {
        let (number, value) = field?;
        let (1, Wire::Bytes(features)) = (number, value) else {
            continue;
        };
        for entry in Fields::new(bytes, features) {
            let (number, value) = entry?;
            let (1, Wire::Bytes(entry)) = (number, value) else {
                continue;
            };
            let mut key: Option<&[u8]> = None;
            let mut feature: Option<std::ops::Range<usize>> = None;
            for part in Fields::new(bytes, entry) {
                match part? {
                    (1, Wire::Bytes(k)) => key = Some(&bytes[k]),
                    (2, Wire::Bytes(f)) => feature = Some(f),
                    _ => {}
                }
            }
            match (key, feature) {
                (Some(b"shape"), Some(f)) => shape = Some(parse_int64_list(bytes, f)?),
                (Some(b"shape"), None) => shape = Some(Vec::new()),
                (Some(b"data"), Some(f)) => data = Some(parse_single_bytes(bytes, f)?),
                (Some(b"data"), None) => bail!("feature 'data' is empty"),
                _ => {}
            }
        }
    }
    let shape = shape
        .context("the Example has no 'shape' feature (not a dataset record of the reference)")?;
    let data =
        data.context("the Example has no 'data' feature (not a dataset record of the reference)")?;
    let shape: [u64; 3] = shape.as_slice().try_into().map_err(|_| {
        anyhow::anyhow!("feature 'shape' is {shape:?}, expected three values [C, H, W]")
    })?;
    let needed = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    ensure!(
        needed == Some(data.len() as u64),
        "feature 'data' has {} bytes but shape {shape:?} needs {}",
        data.len(),
        shape.iter().map(|&d| d as u128).product::<u128>()
    );
    Ok((shape, data))
}

/// The values of a `Feature` that must be an `int64_list` (packed or not).
fn parse_int64_list(bytes: &[u8], feature: std::ops::Range<usize>) -> Result<Vec<u64>> {
    let mut values = Vec::new();
    let mut found = false;
    for field in Fields::new(bytes, feature) {
        match field? {
            (3, Wire::Bytes(list)) => {
                found = true;
                for item in Fields::new(bytes, list) {
                    match item? {
                        (1, Wire::Varint(v)) => values.push(v),
                        (1, Wire::Bytes(packed)) => {
                            let mut pos = packed.start;
                            while pos < packed.end {
                                let (v, next) = get_varint(&bytes[..packed.end], pos)?;
                                values.push(v);
                                pos = next;
                            }
                        }
                        _ => {}
                    }
                }
            }
            (1 | 2, _) => bail!("feature 'shape' is not an int64 list"),
            _ => {}
        }
    }
    ensure!(found, "feature 'shape' is not an int64 list");
    // int64 values are two's complement in the varint; a negative dimension is garbage.
    ensure!(
        values.iter().all(|&v| v < (1 << 62)),
        "feature 'shape' has a negative or absurd dimension: {:?}",
        values.iter().map(|&v| v as i64).collect::<Vec<_>>()
    );
    Ok(values)
}

/// The single value of a `Feature` that must be a `bytes_list` with exactly one entry.
fn parse_single_bytes(
    bytes: &[u8],
    feature: std::ops::Range<usize>,
) -> Result<std::ops::Range<usize>> {
    let mut values = Vec::new();
    let mut found = false;
    for field in Fields::new(bytes, feature) {
        match field? {
            (1, Wire::Bytes(list)) => {
                found = true;
                for item in Fields::new(bytes, list) {
                    if let (1, Wire::Bytes(v)) = item? {
                        values.push(v);
                    }
                }
            }
            (2 | 3, _) => bail!("feature 'data' is not a bytes list"),
            _ => {}
        }
    }
    ensure!(found, "feature 'data' is not a bytes list");
    ensure!(
        values.len() == 1,
        "feature 'data' holds {} byte strings, expected one",
        values.len()
    );
    Ok(values.pop().expect("one value"))
}

/// A protobuf field value; length-delimited values are ranges into the message buffer.
#[derive(Debug)]
enum Wire {
    Varint(u64),
    Fixed64,
    Bytes(std::ops::Range<usize>),
    Fixed32,
}

/// Iterates the fields of the message occupying `buf[range]`.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8], range: std::ops::Range<usize>) -> Self {
        Fields {
            buf,
            pos: range.start,
            end: range.end,
            failed: false,
        }
    }

    fn field(&mut self) -> Result<(u32, Wire)> {
        let buf = &self.buf[..self.end];
        let (key, pos) = get_varint(buf, self.pos)?;
        let number = (key >> 3) as u32;
        ensure!(number > 0, "malformed protobuf: field number 0");
        let (value, pos) = match key & 7 {
            0 => {
                let (v, p) = get_varint(buf, pos)?;
                (Wire::Varint(v), p)
            }
            1 => (Wire::Fixed64, pos + 8),
            2 => {
                let (len, p) = get_varint(buf, pos)?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| p.checked_add(l))
                    .filter(|&e| e <= buf.len());
                let end = end.context(
                    "malformed protobuf: a length-delimited field runs past its message",
                )?;
                (Wire::Bytes(p..end), end)
            }
            5 => (Wire::Fixed32, pos + 4),
            t => bail!("malformed protobuf: unsupported wire type {t}"),
        };
        ensure!(
            pos <= buf.len(),
            "malformed protobuf: a field runs past its message"
        );
        self.pos = pos;
        Ok((number, value))
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<(u32, Wire)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let result = self.field();
        self.failed = result.is_err();
        Some(result)
    }
}

fn get_varint(buf: &[u8], mut pos: usize) -> Result<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf
            .get(pos)
            .context("malformed protobuf: a varint runs past its message")?;
        pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, pos));
        }
    }
    bail!("malformed protobuf: varint longer than 10 bytes")
}

/// Appends a protobuf base-128 varint (also used by the TensorBoard event writer).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: key (wire type 2), length, bytes.
fn field_bytes(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    put_varint(&mut out, (u64::from(number) << 3) | 2);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// The levels of a reference dataset directory: its `<name>-rXX.tfrecords` files as `(XX, path)`, smallest first.
/// A complete directory has one name and every level from r02 up to its largest; anything else is an error saying
/// what is missing. Other files (`*.labels`, `*.partial`) are ignored.
pub fn find_levels(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the dataset directory {}", dir.display()))?;
    let mut levels: Vec<(u32, PathBuf)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some((name, log2)) = parse_level_name(file_name) else {
            continue;
        };
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        levels.push((log2, entry.path()));
    }
    names.sort();
    ensure!(
        !levels.is_empty(),
        "{} holds no <name>-rXX.tfrecords files (a reference dataset has one per level, r02 upwards)",
        dir.display()
    );
    ensure!(
        names.len() == 1,
        "{} mixes the TFRecords of several datasets ({}); keep one dataset per directory",
        dir.display(),
        names.join(", ")
    );
    levels.sort();
    let max = levels.last().expect("non-empty").0;
    let missing: Vec<String> = (2..=max)
        .filter(|l| !levels.iter().any(|(have, _)| have == l))
        .map(|l| format!("r{l:02}"))
        .collect();
    ensure!(
        missing.is_empty(),
        "{}: levels {} of {} are missing (a complete reference dataset has every level r02 … r{max:02})",
        dir.display(),
        missing.join(", "),
        names[0]
    );
    Ok(levels)
}

/// `clevr_simple-r07.tfrecords` → `("clevr_simple", 7)`.
fn parse_level_name(file_name: &str) -> Option<(&str, u32)> {
    let stem = file_name.strip_suffix(".tfrecords")?;
    let (name, level) = stem.rsplit_once("-r")?;
    if name.is_empty() || level.len() != 2 || !level.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let log2: u32 = level.parse().ok()?;
    (2..=30).contains(&log2).then_some((name, log2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The mask is written as TensorFlow documents it, to check the rotate in `masked_crc32c` against it.
    #[allow(clippy::manual_rotate)]
    fn crc32c_reference_vectors() {
        // RFC 3720 (iSCSI) B.4 and the common check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let crc = crc32c::crc32c(b"123456789");
        assert_eq!(
            masked_crc32c(b"123456789"),
            ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn varints() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(get_varint(&buf, 0).unwrap(), (v, buf.len()));
        }
        let mut buf = Vec::new();
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0xac, 0x02]);
        assert!(get_varint(&[0x80, 0x80], 0).is_err());
        assert!(get_varint(&[0xff; 11], 0).is_err());
    }

    #[test]
    fn level_names() {
        assert_eq!(
            parse_level_name("clevr_simple-r07.tfrecords"),
            Some(("clevr_simple", 7))
        );
        assert_eq!(parse_level_name("a-b-r02.tfrecords"), Some(("a-b", 2)));
        assert_eq!(parse_level_name("x-r7.tfrecords"), None);
        assert_eq!(parse_level_name("x-r01.tfrecords"), None);
        assert_eq!(parse_level_name("x-r07.tfrecords.partial"), None);
        assert_eq!(parse_level_name("x-rxx.labels"), None);
        assert_eq!(parse_level_name("-r03.tfrecords"), None);
    }
}
