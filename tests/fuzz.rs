//! Fuzzing on stable Rust (issue 17): every parser of outside input gets valid inputs that the test makes or finds in
//! tests/fixtures, mutated at random (bit flips, random bytes, boundary integers such as 2³²−1 or 10¹² written over
//! length fields, truncation, insertion, deletion, duplication), and must answer each with a value or an error: no
//! panic, no hang (a time bound per input), no unbounded allocation (a header that claims 10¹² elements fails before
//! allocating; an attempt would abort the test process).
//!
//! Parsers: the restricted pickle reader, the PyTorch state-dict reader (both formats), the TFRecord reader, the protobuf Example decoder, the npy reader, the
//! snapshot (safetensors) loader, `dataset.json` with its levels (`Dataset::open`), and training-config JSON.
//! `FUZZ_INPUTS` sets the inputs per parser (default 1500, what CI runs; `scripts/fuzz.sh` runs 100,000) and
//! `FUZZ_SEED` the seed. A failing input is written to `target/fuzz-failure-<parser>.bin`.

mod common;

use common::env_or;
use hessian_gan::config::TrainConfig;
use hessian_gan::core::rng::Rng;
use hessian_gan::data::Dataset;
use hessian_gan::io::{pickle, safetensors, tfrecord, torch_load};
use std::collections::HashMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::Tensor;

/// Longest any single input may take.
const TIME_BOUND: Duration = Duration::from_secs(5);

/// Uniform in `[0, n)` as an index.
fn pick(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

/// Integers that break length and count fields.
const BOUNDARY: [u64; 9] = [
    0,
    1,
    0x7F,
    0xFF,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    1_000_000_000_000,
    i64::MAX as u64,
    u64::MAX,
];

/// One to four random mutations of `seed`.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + pick(rng, 4) {
        let len = b.len();
        match pick(rng, 8) {
            0 if len > 0 => {
                let i = pick(rng, len);
                b[i] ^= 1 << pick(rng, 8);
            }
            1 if len > 0 => {
                let i = pick(rng, len);
                b[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let v = BOUNDARY[pick(rng, BOUNDARY.len())].to_le_bytes();
                let width = [1, 2, 4, 8][pick(rng, 4)];
                let at = pick(rng, len);
                for (k, byte) in v.iter().take(width).enumerate() {
                    if at + k < len {
                        b[at + k] = *byte;
                    }
                }
            }
            3 => b.truncate(pick(rng, len + 1)),
            4 => {
                let at = pick(rng, len + 1);
                let extra: Vec<u8> = (0..1 + pick(rng, 16))
                    .map(|_| rng.next_u64() as u8)
                    .collect();
                b.splice(at..at, extra);
            }
            5 if len > 0 => {
                let at = pick(rng, len);
                let n = 1 + pick(rng, (len - at).min(64));
                b.drain(at..at + n);
            }
            6 if len > 0 => {
                let at = pick(rng, len);
                let n = 1 + pick(rng, (len - at).min(64));
                let chunk = b[at..at + n].to_vec();
                let to = pick(rng, len + 1);
                b.splice(to..to, chunk);
            }
            _ if len > 0 => {
                // A run of ASCII digits becomes a huge number (text formats: sizes, counts, shapes).
                let at = pick(rng, len);
                if let Some(start) = (at..len).find(|&i| b[i].is_ascii_digit()) {
                    let end = (start..len)
                        .find(|&i| !b[i].is_ascii_digit())
                        .unwrap_or(len);
                    b.splice(start..end, b"1000000000000".iter().copied());
                }
            }
            _ => b.push(rng.next_u64() as u8),
        }
    }
    b
}

/// Feeds `inputs` mutations of the seeds to `parse`; fails on a panic or an input over the time bound. Returns the
/// number of inputs, how many were accepted, and the slowest input.
fn fuzz(name: &str, seeds: &[Vec<u8>], parse: impl Fn(&[u8]) -> bool) -> (u64, u64, Duration) {
    let inputs = env_or("FUZZ_INPUTS", 1500);
    let mut rng = Rng::new(env_or("FUZZ_SEED", 1) ^ u64::from(crc32c::crc32c(name.as_bytes())));
    let (mut accepted, mut slowest) = (0, Duration::ZERO);
    // Quiet: a panic is reported once below, with its input saved.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..inputs {
        let seed = &seeds[i as usize % seeds.len()];
        let input = if i < seeds.len() as u64 {
            seed.clone()
        } else {
            mutate(seed, &mut rng)
        };
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| parse(&input)));
        let took = t0.elapsed();
        slowest = slowest.max(took);
        let failure = match outcome {
            Err(p) => Some(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Ok(_) if took > TIME_BOUND => Some(format!("took {took:?}")),
            Ok(ok) => {
                accepted += u64::from(ok);
                None
            }
        };
        if let Some(why) = failure {
            std::panic::set_hook(hook);
            let saved = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("..")
                .join(format!("fuzz-failure-{name}.bin"));
            std::fs::write(&saved, &input).unwrap();
            panic!("{name}: input {i} {why} (saved in {})", saved.display());
        }
    }
    std::panic::set_hook(hook);
    println!(
        "fuzz {name}: {inputs} inputs, 0 panics, 0 over {TIME_BOUND:?}, {accepted} accepted, slowest {slowest:?}"
    );
    (inputs, accepted, slowest)
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

/// A scratch file for parsers that read paths.
fn scratch_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn pickle_reader() {
    let seeds = vec![
        fixture("tiny_progan.pkl"),
        fixture("p2/network-snapshot-000900.pkl"),
        fixture("malicious_os_system.pkl"),
    ];
    fuzz("pickle", &seeds, |b| pickle::load(b).is_ok());
}

/// The state-dict pickle of `{'w': <2×3 float tensor in storage '0' at offset 1, strides (3, 1)>}` as `torch.save`
/// writes it (protocol 2); `view` appends the legacy format's sixth persistent-id field.
fn state_dict_pickle(view: bool) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n\
        ((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x07"
        .to_vec();
    if view {
        p.push(b'N');
    }
    p.extend(b"tQK\x01K\x02K\x03\x86K\x03K\x01\x86\x89h\x00)RtRu.");
    p
}

/// The two seeds of the state-dict reader: a zip archive and a legacy file, each holding [`state_dict_pickle`] and a
/// storage of 7 floats 0..6.
fn state_dict_seeds() -> Vec<Vec<u8>> {
    let data: Vec<u8> = (0..7).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("archive/data.pkl", state_dict_pickle(false)),
        ("archive/byteorder", b"little".to_vec()),
        ("archive/data/0", data.clone()),
    ] {
        zip.start_file(name, stored).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    let zip = zip.finish().unwrap().into_inner();
    let mut legacy =
        b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.".to_vec();
    legacy.extend(b"\x80\x02}X\x0d\x00\x00\x00little_endian\x88s.");
    legacy.extend(state_dict_pickle(true));
    legacy.extend(b"\x80\x02]X\x01\x00\x00\x000a.");
    legacy.extend(7u64.to_le_bytes());
    legacy.extend(data);
    vec![zip, legacy]
}

#[test]
fn torch_state_dict_reader() {
    let dir = common::scratch("fuzz-torch");
    let target = dir.join("input.pth");
    let seeds = state_dict_seeds();
    for seed in &seeds {
        std::fs::write(&target, seed).unwrap();
        let sd = torch_load::load_state_dict(&target).unwrap();
        assert_eq!(sd.len(), 1);
        assert_eq!(sd[0].0, "w");
        let values: Vec<f32> = Vec::try_from(sd[0].1.flatten(0, -1)).unwrap();
        assert_eq!(values, [1., 2., 3., 4., 5., 6.]);
    }
    fuzz("torch_load", &seeds, |b| {
        std::fs::write(&target, b).unwrap();
        torch_load::load_state_dict(&target).is_ok()
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tfrecord_reader_and_example_decoder() {
    let dir = common::scratch("fuzz-tfrecord");
    let images: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i * 40; 4 * 4 * 3]).collect();
    let path = dir.join("seed.tfrecords");
    tfrecord::write_tfrecords(&path, images.iter().map(|d| ([4u64, 4, 3], d.as_slice()))).unwrap();
    let file = std::fs::read(&path).unwrap();
    let example = tfrecord::encode_example([4, 4, 3], &images[1]).unwrap();
    let target = dir.join("input.tfrecords");
    fuzz("tfrecord", &[file], |b| {
        std::fs::write(&target, b).unwrap();
        let Ok(mut reader) = tfrecord::TfRecordReader::open(&target) else {
            return false;
        };
        let mut ok = true;
        loop {
            match reader.next_record() {
                Ok(Some(rec)) => ok &= tfrecord::decode_example(&rec).is_ok(),
                Ok(None) => break ok,
                Err(_) => break false,
            }
        }
    });
    fuzz("example", &[example], |b| {
        tfrecord::decode_example(b).is_ok()
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_reader() {
    let dir = common::scratch("fuzz-npy");
    let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).reshape([2, 3]);
    let seed_path = dir.join("seed.npy");
    hessian_gan::core::latents::write_npy(&t, &seed_path).unwrap();
    let seed = std::fs::read(&seed_path).unwrap();
    let target = dir.join("input.npy");
    fuzz("npy", &[seed], |b| {
        let header_ok = hessian_gan::data::npy::parse_header(b).is_ok();
        std::fs::write(&target, b).unwrap();
        hessian_gan::data::npy::read_f32(&target).is_ok() && header_ok
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn snapshot_loader() {
    let dir = common::scratch("fuzz-safetensors");
    let seed_path = dir.join("seed.safetensors");
    let tensors = vec![
        (
            "G/a".to_string(),
            Tensor::from_slice(&[1.0f32, -2.0, 3.5]).reshape([3, 1]),
        ),
        ("D/b".to_string(), Tensor::from_slice(&[0.25f32])),
    ];
    let meta = HashMap::from([("config".to_string(), "{\"nz\": 3}".to_string())]);
    safetensors::save(&seed_path, &tensors, meta).unwrap();
    let seed = std::fs::read(&seed_path).unwrap();
    let target = dir.join("input.safetensors");
    let (_, accepted, _) = fuzz("safetensors", &[seed], |b| {
        std::fs::write(&target, b).unwrap();
        safetensors::load(&target).is_ok()
    });
    // The checksum refuses nearly every mutation of the data; the unmutated seed and metadata-only edits pass.
    assert!(accepted >= 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dataset_json_and_levels() {
    let root = common::scratch("fuzz-dataset");
    let ds = common::tiny_dataset(&root);
    let meta = std::fs::read(ds.join("dataset.json")).unwrap();
    let level_name = std::fs::read_dir(&ds)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".npy"))
        .unwrap();
    let level = std::fs::read(ds.join(&level_name)).unwrap();
    // Mutations of dataset.json with whole levels, then of one level with a whole dataset.json.
    fuzz("dataset_json", std::slice::from_ref(&meta), |b| {
        std::fs::write(ds.join("dataset.json"), b).unwrap();
        Dataset::open(&ds).is_ok()
    });
    std::fs::write(ds.join("dataset.json"), &meta).unwrap();
    fuzz("dataset_level", std::slice::from_ref(&level), |b| {
        std::fs::write(ds.join(&level_name), b).unwrap();
        Dataset::open(&ds).is_ok()
    });
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn training_config_json() {
    let dir = common::scratch("fuzz-config");
    let seeds: Vec<Vec<u8>> = [
        "configs/clevr_simple_hp.json",
        "configs/cpu-demo.json",
        "configs/finetune.json",
    ]
    .iter()
    .map(|p| std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap())
    .collect();
    let target = scratch_file(&dir, "preset.json", &seeds[0]);
    fuzz("config", &seeds, |b| {
        std::fs::write(&target, b).unwrap();
        TrainConfig::resolve(TrainConfig::default(), Some(&target), Default::default())
            .and_then(|c| c.validate().map(|_| c))
            .is_ok()
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn headers_that_claim_huge_sizes_fail_without_allocating() {
    // npy: a 10¹²-element shape over a 24-byte payload.
    let dir = common::scratch("fuzz-huge");
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let mut header =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend([0u8; 24]);
    let p = scratch_file(&dir, "huge.npy", &npy);
    assert!(hessian_gan::data::npy::read_f32(&p).is_err());
    // TFRecord: a record whose length field says 10¹² bytes.
    let mut rec = 1_000_000_000_000u64.to_le_bytes().to_vec();
    rec.extend(tfrecord::masked_crc32c(&rec).to_le_bytes());
    rec.extend([0u8; 16]);
    let p = scratch_file(&dir, "huge.tfrecords", &rec);
    let mut reader = tfrecord::TfRecordReader::open(&p).unwrap();
    assert!(reader.next_record().is_err());
    // safetensors: a header length of 10¹² bytes.
    let mut st = 1_000_000_000_000u64.to_le_bytes().to_vec();
    st.extend(b"{}");
    let p = scratch_file(&dir, "huge.safetensors", &st);
    assert!(safetensors::load(&p).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
