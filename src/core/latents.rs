//! Latent vectors shared by visualize, figures and evaluate: the reference's seeded draws, its two latent
//! conventions, and `.npy` files of latents and images (docs/spec/progan_hp.md §7.1, issue 9).
//!
//! Seeded draws reproduce NumPy's legacy `np.random.seed(s); np.random.randn(n, nz)` bit for bit (MT19937 and the
//! polar Box–Muller of `legacy_gauss`), so a seed names the same base latents as in the reference's
//! `visualize.py`: our videos of an imported pretrained model start from the reference's z.

use crate::io::fs;
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// NumPy's legacy `RandomState` (MT19937 with `init_genrand` seeding, 53-bit doubles, polar Box–Muller with the
/// second value cached), enough for `seed` + `randn`.
#[derive(Clone)]
pub struct NumpyRandomState {
    key: [u32; 624],
    pos: usize,
    gauss: Option<f64>,
}

impl NumpyRandomState {
    /// `np.random.RandomState(seed)` for an integer seed (NumPy accepts 0 ..= 2³² − 1).
    pub fn new(seed: u32) -> Self {
        let mut key = [0u32; 624];
        let mut s = seed;
        for (pos, k) in key.iter_mut().enumerate() {
            *k = s;
            s = 1_812_433_253u32
                .wrapping_mul(s ^ (s >> 30))
                .wrapping_add(pos as u32 + 1);
        }
        NumpyRandomState {
            key,
            pos: 624,
            gauss: None,
        }
    }

    /// A seed from the command line, refused (like NumPy) outside 0 ..= 2³² − 1.
    pub fn from_seed(seed: u64) -> Result<Self> {
        let s = u32::try_from(seed).map_err(|_| {
            anyhow::anyhow!("seed {seed} is out of range: NumPy seeds are 0 to 4294967295")
        })?;
        Ok(Self::new(s))
    }

    fn regenerate(&mut self) {
        const N: usize = 624;
        const M: usize = 397;
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..N {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % N] & LOWER);
            let mut v = self.key[(i + M) % N] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= MATRIX_A;
            }
            self.key[i] = v;
        }
        self.pos = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos == 624 {
            self.regenerate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) from two draws (NumPy's `random_sample`).
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// One standard normal value (NumPy's `legacy_gauss`).
    pub fn gauss(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.next_f64() - 1.0;
            let x2 = 2.0 * self.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// `randn(n)`, row-major.
    pub fn randn(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.gauss()).collect()
    }
}

/// Base latents of the reference's tools: `np.random.seed(seed); np.random.randn(n, nz)` (docs/spec/progan_hp.md §7.1), as float32
/// `[n, nz]` on the CPU. These raw values are what `z.npy` files hold.
pub fn seeded_normal(seed: u64, n: i64, nz: i64) -> Result<Tensor> {
    ensure!(n > 0 && nz > 0, "cannot draw {n}×{nz} latents");
    let mut rng = NumpyRandomState::from_seed(seed)?;
    let v = rng.randn((n * nz) as usize);
    Ok(Tensor::from_slice(&v).to_kind(Kind::Float).reshape([n, nz]))
}

/// How latents are fed to G (docs/spec/progan_hp.md §7.1, quirk §13.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatentConvention {
    /// The reference's default for visualize and figures: rows are pixel-normalised to RMS 1 beforehand (in double
    /// precision, as NumPy did) and G's own latent normalisation is off, so a sweep moves a normalised coordinate.
    PostNorm,
    /// `--interpolate-pre-norm`: the raw z goes to G, which normalises it (as in training).
    PreNorm,
}

impl LatentConvention {
    pub fn from_pre_norm(pre_norm: bool) -> Self {
        if pre_norm {
            Self::PreNorm
        } else {
            Self::PostNorm
        }
    }

    /// The rows to sweep or render, from raw latents: normalised for `PostNorm`, unchanged for `PreNorm`.
    pub fn prepare(self, raw: &Tensor) -> Tensor {
        match self {
            Self::PostNorm => normalize_rows(raw),
            Self::PreNorm => raw.to_kind(Kind::Float),
        }
    }

    /// The `normalize_latents` argument of `Generator::forward`.
    pub fn g_normalizes(self) -> bool {
        self == Self::PreNorm
    }
}

/// Pixel norm of each row, `z / sqrt(mean(z²) + 1e-8)`, computed in float64 and returned as float32.
pub fn normalize_rows(z: &Tensor) -> Tensor {
    let z = z.to_kind(Kind::Double);
    let rms = (z.square().mean_dim(1, true, Kind::Double) + 1e-8).sqrt();
    (z / rms).to_kind(Kind::Float)
}

/// Reads latents `[N, nz]` from a `.npy` file (float32, or float64 converted to float32) onto the CPU.
pub fn read_z(path: &Path) -> Result<Tensor> {
    ensure!(
        path.is_file(),
        "{}: no such file; give a .npy of float32 latents [N, nz] (every command writes one as z.npy)",
        path.display()
    );
    let t = Tensor::read_npy(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable .npy file ({e}); expected float32 latents [N, nz] as written by np.save",
            path.display()
        )
    })?;
    let z = match t.kind() {
        Kind::Float => t,
        Kind::Double => t.to_kind(Kind::Float),
        k => bail!(
            "{}: latents must be float32 (or float64), got {k:?}",
            path.display()
        ),
    };
    ensure!(
        z.dim() == 2 && z.size()[0] > 0 && z.size()[1] > 0,
        "{}: latents must be a 2-d array [N, nz], got shape {:?}",
        path.display(),
        z.size()
    );
    ensure!(
        z.isfinite().all().int64_value(&[]) == 1,
        "{}: latents contain NaN or infinite values",
        path.display()
    );
    Ok(z)
}

/// Checks that latents read from `path` fit a model with `nz` inputs.
pub fn check_width(z: &Tensor, nz: i64, path: &Path, model: &str) -> Result<()> {
    let width = z.size()[1];
    ensure!(
        width == nz,
        "{}: latents have width {width} but model {model} takes nz = {nz}",
        path.display()
    );
    Ok(())
}

/// Writes a tensor as `.npy` atomically (CPU copy, contiguous). Float32 latents `[N, nz]` or images `[N, C, H, W]`.
pub fn write_npy(t: &Tensor, path: &Path) -> Result<()> {
    let t = t.to_device(Device::Cpu).contiguous();
    fs::write_atomic(path, |tmp| {
        t.write_npy(tmp)
            .with_context(|| format!("cannot write {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_legacy_randn_bit_for_bit() {
        // Values printed by NumPy 2.4 (`np.random.seed(s); np.random.randn(...)`, legacy stream unchanged since 1.x).
        let mut r = NumpyRandomState::new(0);
        let want = [
            1.764052345967664,
            0.4001572083672233,
            0.9787379841057392,
            2.240893199201458,
            1.8675579901499675,
            -0.977277879876411,
        ];
        assert_eq!(r.randn(6), want);
        let mut r = NumpyRandomState::from_seed(4_294_967_295).unwrap();
        assert_eq!(
            r.randn(3),
            [0.6484086742306527, 0.6693235306338161, -1.0805437227474493]
        );
        assert!(NumpyRandomState::from_seed(1 << 32).is_err());
        // Row 7 of randn(8, 12) with seed 0 (crosses the cached second Box–Muller value many times).
        let z = seeded_normal(0, 8, 12).unwrap();
        let row: Vec<f32> = Vec::try_from(z.get(7)).unwrap();
        assert_eq!(row[0], 1.488_252_2_f32);
        assert_eq!(row[11], 0.706_573_2_f32);
        let n = normalize_rows(&z);
        assert!((n.double_value(&[7, 0]) - 1.4426894224748454).abs() < 1e-6);
        assert!((n.double_value(&[7, 2]) - 1.1426912897096182).abs() < 1e-6);
    }

    #[test]
    fn conventions() {
        let z = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0]).reshape([1, 4]);
        let post = LatentConvention::from_pre_norm(false);
        let p = post.prepare(&z);
        // RMS of (3, 4, 0, 0) is 2.5.
        assert!((p.double_value(&[0, 0]) - 1.2).abs() < 1e-6);
        assert!((p.double_value(&[0, 1]) - 1.6).abs() < 1e-6);
        assert!(!post.g_normalizes());
        let pre = LatentConvention::from_pre_norm(true);
        assert!(pre.prepare(&z).equal(&z));
        assert!(pre.g_normalizes());
    }
}
