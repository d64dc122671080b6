//! The ProGAN "paper" discriminator and the InfoGAN Q head (docs/spec/progan_hp.md §1.5, §1.6, §15.3–§15.5).

use super::super::native;
use super::layers::{
    downscale, lerp, lrelu, minibatch_stddev, EqConv2d, EqDense, Kernels, LayerInfo, GAIN_RELU,
};
use super::NetConfig;
use tch::{nn, Tensor};

/// Minibatch-stddev group size of D_paper (docs/spec/progan_hp.md §1.1).
pub const MBSTD_GROUP_SIZE: i64 = 4;

/// One 8×8-and-up block: conv3×3 (`Conv0`), then conv3×3 + 2×2 average pool (`Conv1_down`).
#[derive(Debug)]
struct DownBlock {
    conv0: EqConv2d,
    conv1_down: EqConv2d,
}

/// The InfoGAN encoder on the 4×4 block's input (TF scope `4x4/Q_Encoder`, docs/spec/progan_hp.md §1.6, §15.4).
#[derive(Debug)]
struct QHead {
    conv: EqConv2d,
    dense0: EqDense,
    dense1: EqDense,
}

/// D_paper (+ Q head). Variables (under the caller's path): `FromRGB_lod{R−s}` (s = 2 … R),
/// `{r}x{r}.Conv0`, `{r}x{r}.Conv1_down` (r = resolution … 8), `4x4.Conv`, `4x4.Dense0`, `4x4.Dense1`, and with
/// `infogan_nz > 0` `4x4.Q_Encoder.{Conv,Dense0,Dense1}`.
#[derive(Debug)]
pub struct Discriminator {
    cfg: NetConfig,
    /// Index `s − 2` holds FromRGB of log2-resolution `s`: 1×1 conv C → nf(s−1), bias, lrelu.
    fromrgb: Vec<EqConv2d>,
    /// Index `s − 3` holds the block of log2-resolution `s`.
    blocks: Vec<DownBlock>,
    conv4: EqConv2d,
    dense0: EqDense,
    dense1: EqDense,
    q: Option<QHead>,
    kernels: Kernels,
}

impl Discriminator {
    /// Builds D under `vs` (e.g. `vs.root() / "D"`), with the Q head when `cfg.infogan_nz > 0`. Panics on an
    /// invalid `cfg`: call [`NetConfig::validate`] first.
    pub fn new(vs: &nn::Path, cfg: &NetConfig) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("Discriminator::new: {e}");
        }
        let r_log2 = cfg.log2_res();
        let fromrgb = (2..=r_log2)
            .map(|s| {
                let p = vs / format!("FromRGB_lod{}", r_log2 - s);
                EqConv2d::new(&p, cfg.num_channels, cfg.nf(s - 1), 1, GAIN_RELU)
            })
            .collect();
        let blocks = (3..=r_log2)
            .map(|s| {
                let p = vs / format!("{0}x{0}", 1i64 << s);
                DownBlock {
                    conv0: EqConv2d::new(
                        &(&p / "Conv0"),
                        cfg.nf(s - 1),
                        cfg.nf(s - 1),
                        3,
                        GAIN_RELU,
                    ),
                    conv1_down: EqConv2d::new(
                        &(&p / "Conv1_down"),
                        cfg.nf(s - 1),
                        cfg.nf(s - 2),
                        3,
                        GAIN_RELU,
                    ),
                }
            })
            .collect();
        let p4 = vs / "4x4";
        let (nf0, nf1) = (cfg.nf(0), cfg.nf(1));
        let conv4 = EqConv2d::new(&(&p4 / "Conv"), nf1 + 1, nf1, 3, GAIN_RELU);
        let dense0 = EqDense::new(&(&p4 / "Dense0"), nf1 * 16, nf0, nf0, GAIN_RELU);
        // docs/spec/progan_hp.md §1.2: the score layer has gain 1.
        let dense1 = EqDense::new(&(&p4 / "Dense1"), nf0, 1, 1, 1.0);
        let q = (cfg.infogan_nz > 0).then(|| {
            let pq = &p4 / "Q_Encoder";
            QHead {
                conv: EqConv2d::new(&(&pq / "Conv"), nf1, nf1, 3, GAIN_RELU),
                dense0: EqDense::new(&(&pq / "Dense0"), nf1 * 16, nf0, nf0, GAIN_RELU),
                dense1: EqDense::new(&(&pq / "Dense1"), nf0, cfg.infogan_nz, cfg.infogan_nz, 1.0),
            }
        });
        Self {
            cfg: cfg.clone(),
            fromrgb,
            blocks,
            conv4,
            dense0,
            dense1,
            q,
            kernels: Kernels::default(),
        }
    }

    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Chooses the arithmetic (the fast kernels by default; the plain ones are the test oracle).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    pub fn has_q_head(&self) -> bool {
        self.q.is_some()
    }

    /// Scores `[N, 1]` and, with the Q head, its encoding `[N, infogan_nz]` of full-resolution images
    /// `x = [N, C, R, R]` at level of detail `lod` (docs/spec/progan_hp.md §1.5). `chunks`: the minibatch-stddev groups act within each
    /// of `chunks` equal contiguous chunks of the batch (the reference's per-GPU batches, docs/spec/progan_hp.md §15.3); inside a chunk
    /// the groups are strided, group size min(4, chunk). Panics when the shapes do not fit (validate batch sizes with
    /// [`super::check_minibatch`]).
    pub fn forward(&self, x: &Tensor, lod: f64, chunks: i64) -> (Tensor, Option<Tensor>) {
        self.run(x, lod, chunks, true)
    }

    /// The scores alone, without evaluating the Q head (reals and the gradient-penalty mix need no encoding; TF
    /// evaluated only what was fetched, so this is what the reference computed for them).
    pub fn score(&self, x: &Tensor, lod: f64, chunks: i64) -> Tensor {
        self.run(x, lod, chunks, false).0
    }

    fn run(&self, x: &Tensor, lod: f64, chunks: i64, want_q: bool) -> (Tensor, Option<Tensor>) {
        let cfg = &self.cfg;
        let (lo, alpha) = cfg.split_lod(lod);
        let r_log2 = cfg.log2_res();
        let top = r_log2 - lo;
        let (n, c, hh, ww) = x.size4().expect("D expects images [N, C, H, W]");
        let res = cfg.resolution;
        assert!(
            c == cfg.num_channels && hh == res && ww == res,
            "D expects images [N, {}, {res}, {res}], got [{n}, {c}, {hh}, {ww}]",
            cfg.num_channels
        );
        let x = match self.kernels {
            Kernels::Fast => native::channels_last(x),
            Kernels::Plain => x.shallow_clone(),
        };
        let x = &x;
        // docs/spec/progan_hp.md §1.5: entry FromRGB_r(boxdown(x, 2^L)) → block r; if α > 0 lerp toward FromRGB_{r−1}(boxdown(x, 2^{L+1})).
        let mut h = self.rgb_in(top, &downscale(x, 1 << lo));
        if top > 2 {
            h = self.block(top, &h);
            if alpha > 0.0 {
                let low = self.rgb_in(top - 1, &downscale(x, 1 << (lo + 1)));
                h = lerp(&h, &low, alpha);
            }
            for s in (3..top).rev() {
                h = self.block(s, &h);
            }
        }
        // 4×4 block: the Q head reads its input, before minibatch stddev (docs/spec/progan_hp.md §1.6).
        let q = self.q.as_ref().filter(|_| want_q).map(|q| {
            let y = lrelu(&q.conv.forward(&h));
            let y = lrelu(&q.dense0.forward(&y));
            q.dense1.forward(&y)
        });
        let h = minibatch_stddev(&h, MBSTD_GROUP_SIZE, chunks);
        let h = lrelu(&self.conv4.forward(&h));
        let h = lrelu(&self.dense0.forward(&h));
        (self.dense1.forward(&h), q)
    }

    fn rgb_in(&self, s: i64, x: &Tensor) -> Tensor {
        lrelu(&self.fromrgb[(s - 2) as usize].forward(x))
    }

    fn block(&self, s: i64, x: &Tensor) -> Tensor {
        let b = &self.blocks[(s - 3) as usize];
        let x = lrelu(&b.conv0.forward(x));
        // docs/spec/progan_hp.md §15.5: conv → 2×2 average pool → bias → lrelu (the fused TF op, same kernel, no rotation).
        lrelu(&b.conv1_down.conv_down(&x, self.kernels))
    }

    /// One row per layer at full resolution (the `train --dry-run` summary); the Q head's rows come last, named
    /// `4x4/Q_Encoder/...`.
    pub fn layer_info(&self) -> Vec<LayerInfo> {
        let cfg = &self.cfg;
        let r_log2 = cfg.log2_res();
        let mut rows = Vec::new();
        for s in (2..=r_log2).rev() {
            let l = &self.fromrgb[(s - 2) as usize];
            rows.push(LayerInfo {
                name: format!("FromRGB_lod{}", r_log2 - s),
                shape: vec![l.out_channels(), 1 << s, 1 << s],
                params: l.num_params(),
            });
        }
        for s in (3..=r_log2).rev() {
            let b = &self.blocks[(s - 3) as usize];
            let res = 1i64 << s;
            rows.push(LayerInfo {
                name: format!("{res}x{res}/Conv0"),
                shape: vec![b.conv0.out_channels(), res, res],
                params: b.conv0.num_params(),
            });
            rows.push(LayerInfo {
                name: format!("{res}x{res}/Conv1_down"),
                shape: vec![b.conv1_down.out_channels(), res / 2, res / 2],
                params: b.conv1_down.num_params(),
            });
        }
        let nf1 = cfg.nf(1);
        rows.push(LayerInfo {
            name: "4x4/MinibatchStddev".into(),
            shape: vec![nf1 + 1, 4, 4],
            params: 0,
        });
        rows.push(LayerInfo {
            name: "4x4/Conv".into(),
            shape: vec![nf1, 4, 4],
            params: self.conv4.num_params(),
        });
        rows.push(LayerInfo {
            name: "4x4/Dense0".into(),
            shape: vec![self.dense0.out_features()],
            params: self.dense0.num_params(),
        });
        rows.push(LayerInfo {
            name: "4x4/Dense1".into(),
            shape: vec![1],
            params: self.dense1.num_params(),
        });
        rows.extend(self.q_layer_info());
        rows
    }

    fn q_layer_info(&self) -> Vec<LayerInfo> {
        let Some(q) = &self.q else {
            return Vec::new();
        };
        vec![
            LayerInfo {
                name: "4x4/Q_Encoder/Conv".into(),
                shape: vec![q.conv.out_channels(), 4, 4],
                params: q.conv.num_params(),
            },
            LayerInfo {
                name: "4x4/Q_Encoder/Dense0".into(),
                shape: vec![q.dense0.out_features()],
                params: q.dense0.num_params(),
            },
            LayerInfo {
                name: "4x4/Q_Encoder/Dense1".into(),
                shape: vec![q.dense1.out_features()],
                params: q.dense1.num_params(),
            },
        ]
    }

    /// Trainable parameters of the score path (everything but the Q head).
    pub fn num_params(&self) -> i64 {
        self.layer_info().iter().map(|r| r.params).sum::<i64>() - self.q_num_params()
    }

    /// Trainable parameters of the Q head (0 without one).
    pub fn q_num_params(&self) -> i64 {
        self.q_layer_info().iter().map(|r| r.params).sum()
    }
}
