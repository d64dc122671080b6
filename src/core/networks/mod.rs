//! The ProGAN "paper" networks of the reference (docs/spec/progan_hp.md §1, §15.1, §15.3–§15.5): the generator with its
//! numbered Hessian-Penalty layers, the discriminator with minibatch stddev, and the InfoGAN Q head. `biggan` holds the
//! frozen, pretrained BigGAN-PyTorch generator of §11; `infogan_cr` the InfoGAN-CR networks.
//!
//! Tensors stay on the input's device and the forward passes never read a value back to the host: `lod` is a host
//! `f64` that selects the active blocks.
//!
//! # Variable names and the TF checkpoint mapping
//!
//! Variables are created under the path the caller passes (say `G`, `D`); below it each name is the reference's TF
//! variable name with `/` written `.` (tch's separator; every other character of the TF names is legal), so
//! `4x4/Dense/weight` of G becomes `G.4x4.Dense.weight`. Conversion of the values:
//! [`tf_compat::tf_weight_to_tch`]. TF stores weights unscaled, as we do (docs/spec/progan_hp.md §1.7).
//!
//! | network | TF name (`/`) | ours (`.`), shape | TF shape | conversion |
//! |---|---|---|---|---|
//! | G | `4x4/Dense/weight` | `[16·nf(1), nz]` | `[nz, 16·nf(1)]` | transpose |
//! | G | `4x4/Dense/bias` | `[nf(1)]` (added after the reshape) | same | — |
//! | G | `4x4/Conv/weight` | `[nf(1), nf(1), 3, 3]` | `[3, 3, in, out]` | `permute(3, 2, 0, 1)` |
//! | G | `{r}x{r}/Conv0_up/weight` (r ≥ 8) | `[nf(s−1), nf(s−2), 3, 3]` | `[3, 3, in, out]` | permute, then **rotate 180°** (`flip(2, 3)`) |
//! | G | `{r}x{r}/Conv1/weight` | `[nf(s−1), nf(s−1), 3, 3]` | `[3, 3, in, out]` | permute |
//! | G | `ToRGB_lod{k}/weight` (k = R − s) | `[C, nf(s−1), 1, 1]` | `[1, 1, in, C]` | permute |
//! | D | `FromRGB_lod{k}/weight` | `[nf(s−1), C, 1, 1]` | `[1, 1, C, out]` | permute |
//! | D | `{r}x{r}/Conv0/weight`, `{r}x{r}/Conv1_down/weight` | `[out, in, 3, 3]` | `[3, 3, in, out]` | permute (no rotation) |
//! | D | `4x4/Conv/weight` | `[nf(1), nf(1)+1, 3, 3]` (stddev channel last in both) | `[3, 3, in, out]` | permute |
//! | D | `4x4/Dense0/weight`, `4x4/Dense1/weight` | `[out, in]` | `[in, out]` | transpose |
//! | D | `4x4/Q_Encoder/{Conv,Dense0,Dense1}/weight` | as above | as above | permute / transpose |
//! | both | `…/bias` | `[out]` | same | — |
//! | both | `lod` | — (an argument of `forward`) | scalar | skip |
//!
//! Why the rotation: TF's fused `upscale2d_conv2d` builds a 4×4 kernel from the 3×3 one (channel axes swapped,
//! zero-padded to 5×5, sum of the four 1-pixel shifts) and applies it as a stride-2 transposed convolution. That
//! equals nearest ×2 upsampling followed by a SAME 3×3 cross-correlation with the kernel rotated by 180°, which is
//! what G runs here (docs/spec/progan_hp.md §1.2, [`tf_compat::tf_upscale2d_conv2d`], checked in `tests/networks.rs`). D's fused
//! `conv2d_downscale2d` equals the same-kernel conv followed by 2×2 average pooling, so D's weights are not rotated.
//! Dense layers flatten NCHW in C-major order (`c·H·W + h·W + w`) in both frameworks.

pub mod biggan;
pub mod discriminator;
pub mod generator;
pub mod infogan_cr;
pub mod layers;
pub mod tf_compat;

pub use discriminator::{Discriminator, MBSTD_GROUP_SIZE};
pub use generator::Generator;
pub use layers::{
    downscale, lrelu, minibatch_stddev, pixel_norm, upscale, EqConv2d, EqDense, Kernels, LayerInfo,
};

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use tch::{nn, Device};

/// Architecture of G and D. `Default` is the paper's: 128², nz 12, RGB, fmap_base 8192, fmap_max 512, no Q head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetConfig {
    /// Output / input image side, a power of two ≥ 8.
    pub resolution: i64,
    /// Latent size.
    pub nz: i64,
    /// Image channels (3 for RGB, 1 for grey).
    pub num_channels: i64,
    /// Feature maps at stage s: `min(fmap_base / 2^s, fmap_max)`.
    pub fmap_base: i64,
    pub fmap_max: i64,
    /// Outputs of D's InfoGAN Q head (0 = no head); it reconstructs the first `infogan_nz` components of z.
    pub infogan_nz: i64,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            resolution: 128,
            nz: 12,
            num_channels: 3,
            fmap_base: 8192,
            fmap_max: 512,
            infogan_nz: 0,
        }
    }
}

impl NetConfig {
    /// `R = log2(resolution)` (7 at 128²).
    pub fn log2_res(&self) -> i64 {
        63 - self.resolution.max(1).leading_zeros() as i64
    }

    /// Feature maps of stage `s`: `min(floor(fmap_base / 2^s), fmap_max)` (docs/spec/progan_hp.md §1.1, fmap_decay 1).
    pub fn nf(&self, stage: i64) -> i64 {
        let v = if stage >= 63 {
            0
        } else {
            self.fmap_base >> stage
        };
        v.min(self.fmap_max)
    }

    /// The largest lod, `R − 2` (only the 4×4 block active).
    pub fn max_lod(&self) -> f64 {
        (self.log2_res() - 2) as f64
    }

    /// Checks the configuration; errors name the flag to change.
    pub fn validate(&self) -> Result<()> {
        let r = self.resolution;
        ensure!(
            (8..=1 << 14).contains(&r) && r & (r - 1) == 0,
            "--resolution {r} is not supported: use a power of two from 8 to 16384 (the paper uses 128)"
        );
        ensure!(
            self.nz >= 1,
            "--nz {} is not supported: the latent size must be at least 1",
            self.nz
        );
        ensure!(
            self.num_channels >= 1,
            "the images have {} channels: need at least 1",
            self.num_channels
        );
        ensure!(
            self.fmap_base >= 1 && self.fmap_max >= 1,
            "--fmap-base {} / --fmap-max {}: both must be at least 1",
            self.fmap_base,
            self.fmap_max
        );
        // nf is non-increasing in the stage; the deepest stage in use is R − 1 (D's FromRGB and G's last block).
        let r_log2 = self.log2_res();
        ensure!(
            self.nf(r_log2 - 1) >= 1,
            "--fmap-base {} is too small for --resolution {r}: the {r}×{r} layers would get 0 feature maps \
             (need fmap_base ≥ {})",
            self.fmap_base,
            1i64 << (r_log2 - 1)
        );
        ensure!(
            (0..=self.nz).contains(&self.infogan_nz),
            "--infogan-nz {} must be between 0 and --nz {} (Q reconstructs the first infogan_nz components of z)",
            self.infogan_nz,
            self.nz
        );
        Ok(())
    }

    /// `(L, α)` with `L = floor(lod)`, `α = lod − L` (docs/spec/progan_hp.md §1.4). Panics outside `[0, R − 2]`: the schedule
    /// produces lods in range.
    pub fn split_lod(&self, lod: f64) -> (i64, f64) {
        assert!(
            lod.is_finite() && (0.0..=self.max_lod()).contains(&lod),
            "lod {lod} is outside [0, {}] for resolution {}",
            self.max_lod(),
            self.resolution
        );
        let lo = lod.floor();
        (lo as i64, lod - lo)
    }

    /// Number of HP layers, `2R − 1` (13 at 128², docs/spec/progan_hp.md §15.1): 1 = dense, 2 … 2R−2 = the convolutions, 2R−1 = RGB.
    pub fn num_hp_layers(&self) -> usize {
        (2 * self.log2_res() - 1) as usize
    }

    /// Errors unless every index is in `1..=2R−1`.
    pub fn check_hp_layers(&self, layers: &[usize]) -> Result<()> {
        let n = self.num_hp_layers();
        for &l in layers {
            ensure!(
                (1..=n).contains(&l),
                "--layers-to-reg {l} does not exist at resolution {}: G has layers 1..={n} \
                 (1 = dense, 2..={} = convolutions, {n} = RGB output)",
                self.resolution,
                n - 1
            );
        }
        Ok(())
    }

    fn assert_layer(&self, layer: usize) {
        if let Err(e) = self.check_hp_layers(&[layer]) {
            panic!("{e}");
        }
    }

    /// log2 of the block that computes HP layer `layer` (2 for layers 1–2; for the RGB output, R). Panics on an
    /// index outside `1..=2R−1`.
    pub fn hp_layer_stage(&self, layer: usize) -> i64 {
        self.assert_layer(layer);
        if layer == self.num_hp_layers() {
            self.log2_res()
        } else if layer <= 2 {
            2
        } else {
            (layer as i64 - 3) / 2 + 3
        }
    }

    /// Spatial size of HP layer `layer` (docs/spec/progan_hp.md §1.3; the RGB output is at full resolution).
    pub fn hp_layer_resolution(&self, layer: usize) -> i64 {
        1 << self.hp_layer_stage(layer)
    }

    /// Per-sample shape `[C, H, W]` of HP layer `layer`.
    pub fn hp_layer_shape(&self, layer: usize) -> Vec<i64> {
        let res = self.hp_layer_resolution(layer);
        let c = if layer == self.num_hp_layers() {
            self.num_channels
        } else {
            self.nf(self.hp_layer_stage(layer) - 1)
        };
        vec![c, res, res]
    }

    /// The reference's TF name of HP layer `layer`: `4x4/Dense`, `4x4/Conv`, `{r}x{r}/Conv0_up`, `{r}x{r}/Conv1`,
    /// `images_out` (docs/spec/progan_hp.md §1.3; the activation is the `Post_norm` tensor of that scope).
    pub fn hp_layer_name(&self, layer: usize) -> String {
        let stage = self.hp_layer_stage(layer);
        let res = 1i64 << stage;
        match layer {
            l if l == self.num_hp_layers() => "images_out".to_string(),
            1 => "4x4/Dense".to_string(),
            2 => "4x4/Conv".to_string(),
            l if l % 2 == 1 => format!("{res}x{res}/Conv0_up"),
            _ => format!("{res}x{res}/Conv1"),
        }
    }

    /// The lod gate's threshold `req = R − log2(res) + 1` of HP layer `layer` (docs/spec/progan_hp.md §3.3 point 6, §15.2): the layer
    /// weighs `min(req − lod, 1)` while `lod < req`, else 0. The RGB output has req 1.
    pub fn hp_layer_req(&self, layer: usize) -> i64 {
        self.log2_res() - self.hp_layer_stage(layer) + 1
    }
}

/// Errors unless a batch of `n` splits into `chunks` equal chunks whose size is a multiple of the minibatch-stddev
/// group `min(group_size, n / chunks)` (docs/spec/progan_hp.md §1.2, §15.3).
pub fn check_minibatch(n: i64, chunks: i64, group_size: i64) -> Result<()> {
    ensure!(
        n >= 1 && chunks >= 1 && group_size >= 1,
        "batch {n}, chunks {chunks} and group size {group_size} must all be at least 1"
    );
    ensure!(
        n % chunks == 0,
        "a batch of {n} does not split into {chunks} equal chunks (--num-gpus): choose a multiple of {chunks}"
    );
    let per = n / chunks;
    let g = group_size.min(per);
    ensure!(
        per % g == 0,
        "per-chunk batch {per} is not a multiple of the minibatch-stddev group size {g}"
    );
    Ok(())
}

/// Trainable parameters in a VarStore.
pub fn param_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

/// Trainable parameters whose name starts with `prefix` followed by `.` (e.g. `"D.4x4.Q_Encoder"`).
pub fn param_count_prefix(vs: &nn::VarStore, prefix: &str) -> i64 {
    let dotted = format!("{prefix}.");
    vs.variables()
        .iter()
        .filter(|(name, t)| name.starts_with(&dotted) && t.requires_grad())
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

/// `1234567` → `1,234,567`.
fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The network summary for `train --dry-run`: every layer with its per-sample output shape (at full resolution)
/// and parameter count, and the G / D / Q totals. Builds the networks on a throwaway CPU VarStore and checks that
/// the rows add up to what the VarStore holds.
pub fn summary(cfg: &NetConfig) -> Result<String> {
    cfg.validate()?;
    let vs = nn::VarStore::new(Device::Cpu);
    let (g, d) = tch::no_grad(|| {
        (
            Generator::new(&(vs.root() / "G"), cfg),
            Discriminator::new(&(vs.root() / "D"), cfg),
        )
    });
    let (g_total, d_total, q_total) = (g.num_params(), d.num_params(), d.q_num_params());
    ensure!(
        g_total == param_count_prefix(&vs, "G")
            && d_total + q_total == param_count_prefix(&vs, "D")
            && q_total == param_count_prefix(&vs, "D.4x4.Q_Encoder"),
        "internal error: the layer table does not add up to the VarStore's parameter count"
    );
    let shape = |s: &[i64]| {
        s.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("×")
    };
    let mut out = String::new();
    let row = |out: &mut String, hp: &str, name: &str, shape: &str, params: &str| {
        let _ = writeln!(out, "  {hp:>3} {name:<26} {shape:>14} {params:>14}");
    };
    let _ = writeln!(
        out,
        "Networks: resolution {0}×{0}, nz {1}, channels {2}, fmap_base {3}, fmap_max {4}, infogan_nz {5}",
        cfg.resolution, cfg.nz, cfg.num_channels, cfg.fmap_base, cfg.fmap_max, cfg.infogan_nz
    );
    let _ = writeln!(
        out,
        "Generator G (input: z [{}]; HP = Hessian-Penalty layer number)",
        cfg.nz
    );
    row(&mut out, "HP", "layer", "output", "params");
    let hp_of: std::collections::HashMap<String, usize> = (1..cfg.num_hp_layers())
        .map(|l| (cfg.hp_layer_name(l), l))
        .collect();
    for r in g.layer_info() {
        let hp = hp_of
            .get(&r.name)
            .map(|l| l.to_string())
            .unwrap_or_default();
        row(
            &mut out,
            &hp,
            &r.name,
            &shape(&r.shape),
            &thousands(r.params),
        );
    }
    let rgb = cfg.num_hp_layers().to_string();
    let full = shape(&cfg.hp_layer_shape(cfg.num_hp_layers()));
    row(&mut out, &rgb, "images_out (lod-blended)", &full, "0");
    row(&mut out, "", "G total", "", &thousands(g_total));
    let _ = writeln!(
        out,
        "Discriminator D (input: images [{0}×{1}×{1}])",
        cfg.num_channels, cfg.resolution
    );
    row(&mut out, "", "layer", "output", "params");
    let (q_rows, d_rows): (Vec<_>, Vec<_>) = d
        .layer_info()
        .into_iter()
        .partition(|r| r.name.starts_with("4x4/Q_Encoder/"));
    let layer_rows = |out: &mut String, rows: Vec<LayerInfo>| {
        for r in rows {
            row(out, "", &r.name, &shape(&r.shape), &thousands(r.params));
        }
    };
    layer_rows(&mut out, d_rows);
    row(&mut out, "", "D total", "", &thousands(d_total));
    if d.has_q_head() {
        let _ = writeln!(
            out,
            "InfoGAN Q head (on D's 4×4 input, before minibatch stddev)"
        );
        layer_rows(&mut out, q_rows);
        row(&mut out, "", "Q head total", "", &thousands(q_total));
    }
    Ok(out)
}
