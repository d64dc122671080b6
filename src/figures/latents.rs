//! The latents of the figures (spec progan_hp §9 "Common setup"): NumPy's seeded `randn`, reproduced bit for bit so
//! that `--seeds 0` shows the same samples as the reference's figures, the pixel-norm convention, and `--z` files.

use anyhow::{ensure, Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// NumPy's legacy `RandomState`: MT19937 seeded with one 32-bit integer (`np.random.seed(seed)`) and the polar
/// Box–Muller `randn` that caches its second value (`legacy_gauss`). Only what `sample()` needs.
#[derive(Clone)]
pub struct NumpyRandomState {
    key: [u32; 624],
    pos: usize,
    gauss: Option<f64>,
}

impl NumpyRandomState {
    /// `np.random.seed(seed)`; NumPy accepts seeds 0 … 2³²−1.
    pub fn new(seed: u64) -> Result<Self> {
        let seed = u32::try_from(seed)
            .map_err(|_| anyhow::anyhow!("seed {seed} is out of NumPy's range 0 … 4294967295"))?;
        let mut key = [0u32; 624];
        key[0] = seed;
        for i in 1..624 {
            let prev = key[i - 1];
            key[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Ok(Self {
            key,
            pos: 624,
            gauss: None,
        })
    }

    fn regenerate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..624 {
            let y = (self.key[i] & UPPER) | (self.key[(i + 1) % 624] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.key[i] = self.key[(i + 397) % 624] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    /// The next tempered 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.regenerate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) from 53 random bits (`legacy_double`).
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// One standard normal draw (`legacy_gauss`).
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

    /// `randn(n)` as a vector (row-major order of `randn(rows, cols)` when `n = rows·cols`).
    pub fn randn(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.gauss()).collect()
    }
}

/// The figures' raw latents for one seed: `np.random.seed(seed); np.random.randn(samples, nz)` as float32 `[samples,
/// nz]` on `device` (spec §9 `sample()`).
pub fn seeded(seed: u64, samples: usize, nz: i64, device: Device) -> Result<Tensor> {
    ensure!(nz >= 1, "latent size must be at least 1, got {nz}");
    let mut rng = NumpyRandomState::new(seed)?;
    let values = rng.randn(samples * nz as usize);
    Ok(Tensor::from_slice(&values)
        .to_kind(Kind::Float)
        .reshape([samples as i64, nz])
        .to_device(device))
}

/// What G receives for raw latents `z`, and whether G normalises them itself (spec §9, §13 item 5).
///
/// By default the rows are pixel-normalised here and G is called with `normalize_latents = false`, so an edited
/// component (the ±2 of `active`) is not renormalised. With `pre_norm` (`--interpolate-pre-norm`) the raw z goes in
/// and G normalises it.
pub fn apply_convention(z: &Tensor, pre_norm: bool) -> (Tensor, bool) {
    if pre_norm {
        (z.shallow_clone(), true)
    } else {
        (crate::networks::pixel_norm(z), false)
    }
}

/// Reads a `--z` file: a float32/float64 `.npy` of shape `[samples, nz]` (or `[nz]` for one sample), returned as
/// float32 on the CPU.
pub fn read_z(path: &Path) -> Result<Tensor> {
    ensure!(
        path.is_file(),
        "--z {}: no such file (give a .npy of shape [samples, nz])",
        path.display()
    );
    let t = Tensor::read_npy(path).with_context(|| {
        format!(
            "--z {}: not a readable .npy array (expected float32 or float64 [samples, nz])",
            path.display()
        )
    })?;
    ensure!(
        matches!(t.kind(), Kind::Float | Kind::Double),
        "--z {}: holds {:?} values; expected float32 or float64",
        path.display(),
        t.kind()
    );
    let t = match t.dim() {
        1 => t.unsqueeze(0),
        2 => t,
        _ => anyhow::bail!(
            "--z {}: has shape {:?}; expected [samples, nz]",
            path.display(),
            t.size()
        ),
    };
    ensure!(
        t.size()[0] >= 1 && t.size()[1] >= 1,
        "--z {}: is empty (shape {:?})",
        path.display(),
        t.size()
    );
    ensure!(
        t.isfinite().all().int64_value(&[]) == 1,
        "--z {}: contains NaN or infinite values",
        path.display()
    );
    Ok(t.to_kind(Kind::Float).contiguous())
}

/// Writes latents as a float32 `.npy` (atomically), the format `--z` reads back.
pub fn write_z(path: &Path, z: &Tensor) -> Result<()> {
    let z = z.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    crate::fsutil::write_atomic(path, |tmp| {
        z.write_npy(tmp)
            .with_context(|| format!("cannot write {}", path.display()))
    })
}
