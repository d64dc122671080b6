//! FID (docs/spec/progan_hp.md §8.1): Inception features of reals (the dataset at the model's resolution, in order,
//! repeated when it is smaller than the sample count) and of Gs's fakes (plain N(0, I) z, the reference's uint8
//! conversion); mean and covariance in float64 with the N−1 divisor; the Fréchet distance with the trace of the
//! matrix square root taken in a symmetric, stable form. Real statistics are cached on disk.

use super::detector::{Detector, DetectorInfo};
use super::{normal_latents, sha256_hex, to_uint8_saturate, MetricKind, MetricsOptions};
use crate::core::networks::Generator;
use crate::data::format::{level_file, META_FILE};
use crate::data::npy;
use crate::data::Dataset;
use crate::io::fs;
use crate::io::progress;
use anyhow::{ensure, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Rows per float64 chunk when reducing features to statistics (bounds the float64 copy to ~64 MiB at 2048-d).
const STATS_CHUNK: i64 = 4096;
/// Latent stream of the FID fakes (see [`normal_latents`]).
const FID_STREAM: u64 = 0xF1D;
/// Bytes sampled from each level file for the dataset fingerprint: this many blocks of [`FINGERPRINT_BLOCK`].
const FINGERPRINT_BLOCKS: u64 = 16;
const FINGERPRINT_BLOCK: u64 = 64 * 1024;
/// Bump when the cache layout or the way statistics are computed changes.
const CACHE_VERSION: u32 = 1;

/// Mean and covariance of a feature set (float64, on the CPU).
#[derive(Debug)]
pub struct FeatureStats {
    /// `[D]`.
    pub mean: Tensor,
    /// `[D, D]`, divided by N − 1 (NumPy's `np.cov(rowvar=False)`).
    pub cov: Tensor,
    pub count: usize,
}

impl FeatureStats {
    pub fn dims(&self) -> i64 {
        self.mean.size()[0]
    }

    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        all_finite(&self.mean) && all_finite(&self.cov)
    }
}

fn all_finite(t: &Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) != 0
}

/// Statistics of features `[N, D]` (any float kind, any device): a two-pass mean and centred covariance in float64,
/// chunked so no full float64 copy of the features is made; the result is moved to the CPU.
pub fn feature_stats(features: &Tensor) -> Result<FeatureStats> {
    let s = features.size();
    ensure!(
        s.len() == 2 && s[0] >= 2,
        "FID needs at least 2 feature rows, got shape {s:?}"
    );
    let (n, d) = (s[0], s[1]);
    let dev = features.device();
    let chunks = features.split(STATS_CHUNK, 0);
    let mut sum = Tensor::zeros([d], (Kind::Double, dev));
    for c in &chunks {
        sum += c
            .to_kind(Kind::Double)
            .sum_dim_intlist(0, false, Kind::Double);
    }
    let mean = sum / n as f64;
    let mut cov = Tensor::zeros([d, d], (Kind::Double, dev));
    for c in &chunks {
        let x = c.to_kind(Kind::Double) - &mean;
        let _ = cov.addmm_(&x.tr(), &x);
    }
    let cov = cov / (n - 1) as f64;
    Ok(FeatureStats {
        mean: mean.to_device(Device::Cpu),
        cov: cov.to_device(Device::Cpu),
        count: n as usize,
    })
}

fn symmetrize(m: &Tensor) -> Tensor {
    (m + m.tr()) * 0.5
}

/// The square root of a symmetric positive semi-definite matrix through its eigendecomposition (negative
/// eigenvalues from rounding are clipped to 0). Float64.
pub fn sqrt_psd(m: &Tensor) -> Tensor {
    let (w, v) = symmetrize(&m.to_kind(Kind::Double)).linalg_eigh("L");
    let r = w.clamp_min(0.0).sqrt();
    (&v * r.unsqueeze(0)).matmul(&v.tr())
}

/// Tr(sqrtm(Σ₁Σ₂)) for symmetric PSD Σ₁, Σ₂, computed as Σᵢ √λᵢ over the eigenvalues of the symmetric PSD matrix
/// √Σ₁ Σ₂ √Σ₁, which has the same eigenvalues as Σ₁Σ₂. This avoids the non-symmetric `scipy.linalg.sqrtm` of the
/// reference (whose result can turn complex for singular covariances, hence its "real part"): the value is real by
/// construction and stable when Σ₁ or Σ₂ is (nearly) singular.
pub fn trace_sqrt_product(s1: &Tensor, s2: &Tensor) -> f64 {
    let a = sqrt_psd(s1);
    let m = symmetrize(&a.matmul(&s2.to_kind(Kind::Double)).matmul(&a));
    m.linalg_eigvalsh("L")
        .clamp_min(0.0)
        .sqrt()
        .sum(Kind::Double)
        .double_value(&[])
}

/// ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2·sqrtm(Σ₁Σ₂)) (docs/spec/progan_hp.md §8.1). NaN when either set of statistics is not finite.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    ensure!(
        a.dims() == b.dims(),
        "FID statistics of different widths ({} and {} features)",
        a.dims(),
        b.dims()
    );
    if !a.is_finite() || !b.is_finite() {
        return Ok(f64::NAN);
    }
    let diff = &a.mean - &b.mean;
    let m = diff.dot(&diff).double_value(&[]);
    let tr = a.cov.trace().double_value(&[]) + b.cov.trace().double_value(&[]);
    Ok(m + tr - 2.0 * trace_sqrt_product(&a.cov, &b.cov))
}

/// Inception features of `n` fakes from `g` at `lod`, on the latents `z` `[n, nz]` (already on the generator's
/// device). Nothing is read back to the host inside the loop, so on CUDA the host queues batch k+1 (generation and
/// features) while the GPU still works on batch k.
pub fn fake_features(
    g: &Generator,
    lod: f64,
    z: &Tensor,
    detector: &Detector,
    batch: usize,
) -> Result<Tensor> {
    let n = z.size()[0];
    let bar = progress::bar(Some(n as u64), "FID fakes");
    let _guard = tch::no_grad_guard();
    let mut out: Option<Tensor> = None;
    let mut start = 0i64;
    while start < n {
        let b = (batch as i64).min(n - start);
        let images = g.forward(&z.narrow(0, start, b), lod, true);
        let f = detector.inception_features(&to_uint8_saturate(&images))?;
        let dst =
            out.get_or_insert_with(|| Tensor::empty([n, f.size()[1]], (Kind::Float, f.device())));
        dst.narrow(0, start, b).copy_(&f);
        start += b;
        bar.inc(b as u64);
    }
    bar.finish_and_clear();
    out.context("no fakes")
}

/// Inception features of the first `n` images of `level` (in order, wrapping around when the level holds fewer).
pub fn real_features(
    dataset: &Dataset,
    log2: u32,
    n: usize,
    detector: &Detector,
    batch: usize,
    device: Device,
) -> Result<Tensor> {
    let level = dataset.level(log2)?;
    let count = level.count();
    ensure!(count > 0, "dataset {} is empty", dataset.dir().display());
    let bar = progress::bar(Some(n as u64), "FID reals");
    let _guard = tch::no_grad_guard();
    let mut out: Option<Tensor> = None;
    let mut start = 0usize;
    while start < n {
        let b = batch.min(n - start);
        let idx: Vec<u32> = (start..start + b).map(|i| (i % count) as u32).collect();
        let images = level.tensor(&idx).to_device(device);
        let f = detector.inception_features(&images)?;
        let dst = out.get_or_insert_with(|| {
            Tensor::empty([n as i64, f.size()[1]], (Kind::Float, f.device()))
        });
        dst.narrow(0, start as i64, b as i64).copy_(&f);
        start += b;
        bar.inc(b as u64);
    }
    bar.finish_and_clear();
    out.context("no reals")
}

/// A fingerprint of the images FID reads from `dataset` at level `log2`: SHA-256 over `dataset.json` (count,
/// levels, source, creating command), the level file's name, size and modification time, and 16 blocks of 64 KiB
/// spread evenly over the level file (first and last included). Reading every byte of a multi-GB level on each run
/// would cost more than the cache saves; the modification time catches a dataset rebuilt in place, and a copied
/// dataset (new mtime) simply recomputes its statistics once.
pub fn dataset_fingerprint(dataset: &Dataset, log2: u32) -> Result<String> {
    let dir = dataset.dir();
    let meta_path = dir.join(META_FILE);
    let mut material = std::fs::read(&meta_path)
        .with_context(|| format!("cannot read {}", meta_path.display()))?;
    let name = level_file(log2);
    let path = dir.join(&name);
    let md = std::fs::metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?;
    let size = md.len();
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    material.extend_from_slice(format!("\n{name} {size} {mtime}\n").as_bytes());
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let span = size.saturating_sub(FINGERPRINT_BLOCK);
    let mut buf = vec![0u8; FINGERPRINT_BLOCK as usize];
    for i in 0..FINGERPRINT_BLOCKS {
        let offset = span * i / (FINGERPRINT_BLOCKS - 1);
        file.seek(SeekFrom::Start(offset))?;
        let mut got = 0;
        while got < buf.len() {
            let k = file
                .read(&mut buf[got..])
                .with_context(|| format!("cannot read {}", path.display()))?;
            if k == 0 {
                break;
            }
            got += k;
        }
        material.extend_from_slice(&buf[..got]);
    }
    Ok(sha256_hex(&material))
}

/// The dataset side of a FID result.
#[derive(Clone, Debug, Serialize)]
pub struct RealsInfo {
    pub dir: PathBuf,
    pub name: String,
    /// Images in the dataset (the first `num_real` are used, repeated when fewer).
    pub count: usize,
    pub resolution: usize,
    pub fingerprint: String,
    /// `hit`, `computed`, `recomputed (<why the cached entry was rejected>)`, `computed, not cached (<why the write
    /// failed>)` or `disabled`.
    pub cache: String,
    pub cache_file: Option<PathBuf>,
    /// Images per second of the real features, when they were computed in this run.
    pub images_per_second: Option<f64>,
}

/// The cache key of a real-image statistics entry: everything the statistics depend on.
fn cache_key(fingerprint: &str, n: usize, resolution: usize, detector: &DetectorInfo) -> Value {
    json!({
        "kind": "fid-real-stats",
        "version": CACHE_VERSION,
        "dataset_fingerprint": fingerprint,
        "num_images": n,
        "resolution": resolution,
        "detector_sha256": detector.sha256,
    })
}

fn cache_paths(cache_dir: &Path, dataset_name: &str, key: &Value) -> (PathBuf, PathBuf) {
    let safe: String = dataset_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let h = sha256_hex(key.to_string().as_bytes());
    let stem = format!("fid-reals-{safe}-{}", &h[..16]);
    (
        cache_dir.join(format!("{stem}.npz")),
        cache_dir.join(format!("{stem}.json")),
    )
}

/// Reads a cache entry, or says why it cannot be trusted.
fn read_cache(npz: &Path, side: &Path, key: &Value) -> std::result::Result<FeatureStats, String> {
    let text = std::fs::read_to_string(side).map_err(|_| "no entry".to_string())?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| format!("corrupt {}: {e}", side.display()))?;
    if v.get("key") != Some(key) {
        return Err("stale: its key differs".into());
    }
    let want = v.get("npz_sha256").and_then(Value::as_str).unwrap_or("");
    let bytes = std::fs::read(npz).map_err(|e| format!("cannot read {}: {e}", npz.display()))?;
    if sha256_hex(&bytes) != want {
        return Err(format!(
            "corrupt: {} does not match its checksum",
            npz.display()
        ));
    }
    let tensors = Tensor::read_npz(npz).map_err(|e| format!("corrupt {}: {e}", npz.display()))?;
    let get = |name: &str| {
        tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.to_kind(Kind::Double))
            .ok_or_else(|| format!("corrupt: {} has no {name}", npz.display()))
    };
    let (mean, cov) = (get("mu")?, get("sigma")?);
    let d = mean.size().first().copied().unwrap_or(0);
    let count = v.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
    let stats = FeatureStats { mean, cov, count };
    if stats.mean.dim() != 1 || stats.cov.size() != [d, d] || count < 2 || !stats.is_finite() {
        return Err(format!(
            "corrupt: {} has bad shapes or values",
            npz.display()
        ));
    }
    Ok(stats)
}

fn write_cache(npz: &Path, side: &Path, key: &Value, stats: &FeatureStats) -> Result<()> {
    let values = |t: &Tensor| -> Result<(Vec<u64>, Vec<f64>)> {
        let shape = t.size().iter().map(|&d| d as u64).collect();
        let values = Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1))?;
        Ok((shape, values))
    };
    let (mu_shape, mu) = values(&stats.mean)?;
    let (sigma_shape, sigma) = values(&stats.cov)?;
    let bytes = npy::npz_f64_bytes(&[("mu", &mu_shape, &mu), ("sigma", &sigma_shape, &sigma)])?;
    fs::write_bytes_atomic(npz, &bytes)?;
    let v = json!({"key": key, "npz_sha256": sha256_hex(&bytes), "count": stats.count});
    fs::write_bytes_atomic(side, serde_json::to_string_pretty(&v)?.as_bytes())
}

/// Real-image statistics for `n` images of `dataset` at level `log2`, from the cache when a valid entry exists;
/// otherwise computed (and cached when `opts.use_cache`). A stale or corrupt entry is recomputed and replaced.
pub fn real_stats(
    dataset: &Dataset,
    log2: u32,
    n: usize,
    detector: &Detector,
    opts: &MetricsOptions,
    device: Device,
) -> Result<(FeatureStats, RealsInfo)> {
    let fingerprint = dataset_fingerprint(dataset, log2)?;
    let resolution = 1usize << log2;
    let mut info = RealsInfo {
        dir: dataset.dir().to_path_buf(),
        name: dataset.meta().name.clone(),
        count: dataset.count(),
        resolution,
        fingerprint: fingerprint.clone(),
        cache: "disabled".into(),
        cache_file: None,
        images_per_second: None,
    };
    let key = cache_key(&fingerprint, n, resolution, &detector.info);
    let (npz, side) = cache_paths(&opts.cache_dir, &dataset.meta().name, &key);
    if opts.use_cache {
        info.cache_file = Some(npz.clone());
        match read_cache(&npz, &side, &key) {
            Ok(stats) => {
                info.cache = "hit".into();
                return Ok((stats, info));
            }
            Err(why) if why == "no entry" => info.cache = "computed".into(),
            Err(why) => info.cache = format!("recomputed ({why})"),
        }
    }
    let t0 = Instant::now();
    let feats = real_features(dataset, log2, n, detector, opts.batch_size, device)?;
    let stats = feature_stats(&feats)?;
    info.images_per_second = Some(n as f64 / t0.elapsed().as_secs_f64().max(1e-9));
    if opts.use_cache && stats.is_finite() {
        if let Err(e) = write_cache(&npz, &side, &key, &stats) {
            // The statistics are computed: a cache that cannot be written (a full disk, a read-only directory)
            // costs the next run the time, not this one its result. Neither half of the entry is left behind.
            let _ = std::fs::remove_file(&npz);
            let _ = std::fs::remove_file(&side);
            let why = crate::io::log::error_line(e.as_ref());
            log::warn!("the real-image statistics were not cached: {why}");
            info.cache = format!("computed, not cached ({why})");
        }
    }
    Ok((stats, info))
}

/// One FID result with everything needed to compare it only within the same pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct FidResult {
    /// `fid50k` for the reference's 50,000 images, else `fid<N>` / `fid<N/1000>k`.
    pub name: String,
    pub value: f64,
    pub num_real: usize,
    pub num_fake: usize,
    pub feature_dims: i64,
    pub lod: f64,
    pub seed: u64,
    pub latents: String,
    pub fake_conversion: String,
    pub resize: String,
    pub detector: DetectorInfo,
    pub reals: RealsInfo,
    /// Fakes through G and Inception, per second.
    pub images_per_second: f64,
    pub seconds: f64,
}

/// The whole of FID-N for `g` at `lod` against `dataset` at the generator's resolution. Returns the result and the
/// fake latents `[N, nz]` (CPU) it used.
#[allow(clippy::too_many_arguments)]
pub fn run(
    g: &Generator,
    lod: f64,
    dataset: &Dataset,
    detector: &Detector,
    opts: &MetricsOptions,
    seed: u64,
    device: Device,
) -> Result<(FidResult, Tensor)> {
    let t0 = Instant::now();
    let cfg = g.config();
    let log2 = cfg.log2_res() as u32;
    let n = opts.fid_num_images;
    let (real, reals) = real_stats(dataset, log2, n, detector, opts, device)?;
    let z = normal_latents(seed, &[FID_STREAM, cfg.nz as u64], n, cfg.nz as usize);
    let t1 = Instant::now();
    let feats = fake_features(g, lod, &z.to_device(device), detector, opts.batch_size)?;
    let fake = feature_stats(&feats)?;
    let fake_secs = t1.elapsed().as_secs_f64();
    let value = frechet_distance(&fake, &real)?;
    let result = FidResult {
        name: MetricKind::Fid.result_name(n),
        value,
        num_real: n,
        num_fake: n,
        feature_dims: fake.dims(),
        lod,
        seed,
        latents: format!(
            "z ~ N(0, I) [{n}, {}] from seed {seed} (host SplitMix64 + Box-Muller), pixel-normalised by Gs",
            cfg.nz
        ),
        fake_conversion: "uint8(clamp(x*127.5 + 128, 0, 255)), truncated (the reference's saturate cast)"
            .into(),
        resize: "none here: uint8 images at the model's resolution go to the detector, which resizes itself"
            .into(),
        detector: detector.info.clone(),
        reals,
        images_per_second: n as f64 / fake_secs.max(1e-9),
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((result, z))
}
