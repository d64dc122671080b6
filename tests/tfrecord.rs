//! The reader and writer of the reference's `<name>-rXX.tfrecords` files (docs/spec/progan_hp.md §2.9): round trips,
//! independent hand-built records, and clear errors for corruption and truncation.

use hessian_gan::io::tfrecord::{
    count_records, decode_example, encode_example, find_levels, masked_crc32c, write_tfrecords,
    TfRecordReader,
};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hg-tfrecord-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn image(shape: [u64; 3], seed: u8) -> ([u64; 3], Vec<u8>) {
    let n = (shape[0] * shape[1] * shape[2]) as usize;
    (
        shape,
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect(),
    )
}

fn read_all(path: &Path) -> anyhow::Result<Vec<([u64; 3], Vec<u8>)>> {
    TfRecordReader::open(path)?.collect()
}

/// A TFRecord frame built directly from the format's definition (independent of the crate's writer).
#[allow(clippy::manual_rotate)] // the mask exactly as TensorFlow documents it
fn frame(payload: &[u8]) -> Vec<u8> {
    let mask = |crc: u32| ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = len.to_vec();
    out.extend_from_slice(&mask(crc32c::crc32c(&len)).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&mask(crc32c::crc32c(payload)).to_le_bytes());
    out
}

#[test]
fn images_round_trip_through_a_file() {
    let dir = scratch("roundtrip");
    let path = dir.join("x-r03.tfrecords");
    let imgs = vec![
        image([3, 8, 8], 1),
        image([3, 8, 8], 2),
        image([1, 4, 4], 3),
        image([3, 2, 5], 4),
        image([3, 128, 128], 5),
    ];
    let n = write_tfrecords(&path, imgs.iter().map(|(s, d)| (*s, d.as_slice()))).unwrap();
    assert_eq!(n, 5);
    assert_eq!(count_records(&path).unwrap(), 5);
    let mut reader = TfRecordReader::open(&path).unwrap();
    let mut read = Vec::new();
    for item in reader.by_ref() {
        read.push(item.unwrap());
    }
    assert_eq!(read, imgs);
    assert_eq!(reader.records_read(), 5);
    // The framing is exactly the format's: the file is the concatenation of independently built frames.
    let expected: Vec<u8> = imgs
        .iter()
        .flat_map(|(s, d)| frame(&encode_example(*s, d).unwrap()))
        .collect();
    assert_eq!(std::fs::read(&path).unwrap(), expected);

    // An empty file is a valid file with no records.
    let empty = dir.join("empty.tfrecords");
    write_tfrecords(&empty, Vec::<([u64; 3], Vec<u8>)>::new()).unwrap();
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    assert!(read_all(&empty).unwrap().is_empty());
    assert_eq!(count_records(&empty).unwrap(), 0);
}

#[test]
fn the_writer_rejects_a_shape_that_does_not_match_the_bytes() {
    let dir = scratch("badshape");
    let path = dir.join("x.tfrecords");
    let err = write_tfrecords(&path, [([3u64, 4, 4], vec![0u8; 47])]).unwrap_err();
    assert!(format!("{err:#}").contains("needs 48 bytes, got 47"));
    assert!(!path.exists(), "a failed write leaves nothing behind");
}

/// Protobuf helpers for hand-built messages.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn ld(field: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = varint(field << 3 | 2);
    out.extend(varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

fn map_entry(key: &str, feature: &[u8]) -> Vec<u8> {
    ld(1, &[ld(1, key.as_bytes()), ld(2, feature)].concat())
}

#[test]
fn examples_written_by_other_encoders_decode() {
    // A layout TensorFlow may produce and our writer does not: `data` before `shape`, shape as an unpacked int64
    // list, an extra float feature, an unknown top-level field, and the features split over two messages.
    let pixels: Vec<u8> = (0..12).collect();
    let shape_unpacked = ld(
        3,
        &[
            varint(1 << 3),
            varint(3),
            varint(1 << 3),
            varint(2),
            varint(1 << 3),
            varint(2),
        ]
        .concat(),
    );
    let data_feature = ld(1, &ld(1, &pixels));
    let float_feature = ld(2, &ld(1, &[0, 0, 128, 63, 0, 0, 0, 64]));
    let example = [
        ld(
            1,
            &[
                map_entry("data", &data_feature),
                map_entry("label", &float_feature),
            ]
            .concat(),
        ),
        [varint(7 << 3), varint(99)].concat(),
        [varint(9 << 3 | 5), vec![1, 2, 3, 4]].concat(),
        ld(1, &map_entry("shape", &shape_unpacked)),
    ]
    .concat();
    let (shape, data) = decode_example(&example).unwrap();
    assert_eq!(shape, [3, 2, 2]);
    assert_eq!(data, pixels);

    // The same with a packed shape, read from a file framed by hand.
    let packed = ld(3, &ld(1, &[3u8, 2, 2]));
    let example2 = ld(
        1,
        &[
            map_entry("shape", &packed),
            map_entry("data", &data_feature),
        ]
        .concat(),
    );
    let dir = scratch("foreign");
    let path = dir.join("x.tfrecords");
    std::fs::write(&path, [frame(&example), frame(&example2)].concat()).unwrap();
    let read = read_all(&path).unwrap();
    assert_eq!(
        read,
        vec![([3, 2, 2], pixels.clone()), ([3, 2, 2], pixels.clone())]
    );
}

#[test]
fn malformed_examples_are_clear_errors() {
    let data_feature = ld(1, &ld(1, &[0u8; 12]));
    let shape = |dims: &[u8]| ld(3, &ld(1, dims));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (ld(1, &map_entry("data", &data_feature)), "no 'shape'"),
        (ld(1, &map_entry("shape", &shape(&[3, 2, 2]))), "no 'data'"),
        (
            ld(
                1,
                &[
                    map_entry("shape", &shape(&[3, 2])),
                    map_entry("data", &data_feature),
                ]
                .concat(),
            ),
            "three values",
        ),
        (
            ld(
                1,
                &[
                    map_entry("shape", &shape(&[3, 2, 3])),
                    map_entry("data", &data_feature),
                ]
                .concat(),
            ),
            "has 12 bytes but shape [3, 2, 3] needs 18",
        ),
        (
            ld(
                1,
                &[
                    map_entry("shape", &data_feature),
                    map_entry("data", &data_feature),
                ]
                .concat(),
            ),
            "not an int64 list",
        ),
        (
            ld(
                1,
                &[
                    map_entry("shape", &shape(&[3, 2, 2])),
                    map_entry("data", &ld(1, &[ld(1, &[0; 6]), ld(1, &[0; 6])].concat())),
                ]
                .concat(),
            ),
            "2 byte strings",
        ),
        (vec![0x0a, 0x50, 1, 2], "runs past"),
        (vec![0x0b], "wire type 3"),
    ];
    for (bytes, want) in cases {
        let msg = format!("{:#}", decode_example(&bytes).unwrap_err());
        assert!(msg.contains(want), "expected {want:?} in {msg:?}");
    }

    // In a file, the error names the file and the record.
    let dir = scratch("malformed");
    let path = dir.join("x.tfrecords");
    let good = encode_example([3, 2, 2], &[7u8; 12]).unwrap();
    std::fs::write(
        &path,
        [
            frame(&good),
            frame(&ld(1, &map_entry("data", &data_feature))),
        ]
        .concat(),
    )
    .unwrap();
    let mut reader = TfRecordReader::open(&path).unwrap();
    assert_eq!(reader.next().unwrap().unwrap(), ([3, 2, 2], vec![7u8; 12]));
    let msg = format!("{:#}", reader.next().unwrap().unwrap_err());
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("record 1"),
        "{msg}"
    );
    assert!(reader.next().is_none(), "the reader stops after an error");
}

#[test]
fn a_flipped_byte_anywhere_is_caught_with_the_record_index() {
    let dir = scratch("flip");
    let path = dir.join("x.tfrecords");
    let imgs: Vec<_> = (0..4).map(|i| image([3, 4, 4], i)).collect();
    write_tfrecords(&path, imgs.iter().map(|(s, d)| (*s, d.as_slice()))).unwrap();
    let good = std::fs::read(&path).unwrap();
    let record_len = good.len() / 4;
    let bad = dir.join("bad.tfrecords");
    // In record 2: a length byte, a length-CRC byte, a data byte, a data-CRC byte.
    for (offset, what) in [
        (0, "length CRC"),
        (9, "length CRC"),
        (40, "data CRC"),
        (record_len - 2, "data CRC"),
    ] {
        let mut bytes = good.clone();
        bytes[2 * record_len + offset] ^= 0x04;
        std::fs::write(&bad, &bytes).unwrap();
        let results: Vec<_> = TfRecordReader::open(&bad).unwrap().collect();
        assert_eq!(
            results.len(),
            3,
            "two good records, then one error, then the end"
        );
        assert_eq!(results[0].as_ref().unwrap(), &imgs[0]);
        assert_eq!(results[1].as_ref().unwrap(), &imgs[1]);
        let msg = format!("{:#}", results[2].as_ref().unwrap_err());
        assert!(
            msg.contains(&bad.display().to_string())
                && msg.contains("record 2")
                && msg.contains(what),
            "offset {offset}: {msg}"
        );
        assert!(msg.contains("corrupt") && !msg.contains('\n'), "{msg}");
        if what == "length CRC" {
            assert!(format!("{:#}", count_records(&bad).unwrap_err()).contains("record 2"));
        } else {
            // Counting reads headers only: payload corruption is found by the full read.
            assert_eq!(count_records(&bad).unwrap(), 4);
        }
    }
}

#[test]
fn a_truncated_file_is_an_error_at_every_cut() {
    let dir = scratch("truncated");
    let path = dir.join("x.tfrecords");
    let imgs: Vec<_> = (0..3).map(|i| image([3, 4, 4], i)).collect();
    write_tfrecords(&path, imgs.iter().map(|(s, d)| (*s, d.as_slice()))).unwrap();
    let good = std::fs::read(&path).unwrap();
    let record_len = good.len() / 3;
    let cut_path = dir.join("cut.tfrecords");
    for cut in 1..good.len() {
        std::fs::write(&cut_path, &good[..cut]).unwrap();
        let results: Vec<_> = TfRecordReader::open(&cut_path).unwrap().collect();
        let complete = cut / record_len;
        if cut % record_len == 0 {
            // A cut at a record boundary is a valid, shorter file: only the dataset's size check can tell.
            assert_eq!(results.len(), complete);
            assert!(results.iter().all(|r| r.is_ok()));
            continue;
        }
        assert_eq!(results.len(), complete + 1, "cut at {cut}");
        let msg = format!("{:#}", results[complete].as_ref().unwrap_err());
        assert!(
            msg.contains("truncated")
                && msg.contains(&format!("record {complete}"))
                && msg.contains("cut.tfrecords"),
            "cut at {cut}: {msg}"
        );
        let msg = format!("{:#}", count_records(&cut_path).unwrap_err());
        assert!(
            msg.contains("truncated") && msg.contains(&format!("record {complete}")),
            "{msg}"
        );
    }
}

#[test]
fn a_huge_length_field_does_not_allocate() {
    // A well-formed header announcing 2^40 bytes in a 30-byte file: reported as truncated, not an allocation.
    let dir = scratch("huge");
    let path = dir.join("x.tfrecords");
    let len = (1u64 << 40).to_le_bytes();
    let mut bytes = len.to_vec();
    bytes.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    bytes.extend_from_slice(&[0u8; 18]);
    std::fs::write(&path, &bytes).unwrap();
    let msg = format!("{:#}", read_all(&path).unwrap_err());
    assert!(
        msg.contains("truncated") && msg.contains("record 0"),
        "{msg}"
    );
}

#[test]
fn find_levels_requires_one_complete_dataset() {
    let dir = scratch("levels");
    let ds = dir.join("clevr_simple");
    std::fs::create_dir_all(&ds).unwrap();
    let err = format!("{:#}", find_levels(&ds).unwrap_err());
    assert!(err.contains("no <name>-rXX.tfrecords"), "{err}");
    for l in [2, 3, 4, 6] {
        std::fs::write(ds.join(format!("clevr_simple-r{l:02}.tfrecords")), b"").unwrap();
    }
    std::fs::write(ds.join("clevr_simple-rxx.labels"), b"").unwrap();
    std::fs::write(ds.join("clevr_simple-r07.tfrecords.partial"), b"").unwrap();
    let err = format!("{:#}", find_levels(&ds).unwrap_err());
    assert!(err.contains("r05") && err.contains("missing"), "{err}");
    std::fs::write(ds.join("clevr_simple-r05.tfrecords"), b"").unwrap();
    let levels = find_levels(&ds).unwrap();
    assert_eq!(
        levels,
        (2..=6)
            .map(|l| (l, ds.join(format!("clevr_simple-r{l:02}.tfrecords"))))
            .collect::<Vec<_>>()
    );
    std::fs::write(ds.join("other-r02.tfrecords"), b"").unwrap();
    let err = format!("{:#}", find_levels(&ds).unwrap_err());
    assert!(err.contains("clevr_simple, other"), "{err}");
    let err = format!("{:#}", find_levels(&dir.join("nope")).unwrap_err());
    assert!(err.contains("nope"), "{err}");
}
