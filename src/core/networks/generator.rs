//! The ProGAN "paper" generator (docs/spec/progan_hp.md §1.3, §1.4, §15.1, §15.5).

use super::super::native;
use super::layers::{
    lerp, lrelu, pixel_norm, upscale, EqConv2d, EqDense, Kernels, LayerInfo, EPSILON, GAIN_RELU,
};
use super::NetConfig;
use tch::{nn, Tensor};

/// One 8×8-and-up block: nearest ×2 up + conv3×3 (`Conv0_up`), then conv3×3 (`Conv1`).
#[derive(Debug)]
struct UpBlock {
    conv0_up: EqConv2d,
    conv1: EqConv2d,
}

/// G_paper. Variables (under the caller's path, `/` of the TF names written `.`):
/// `4x4.Dense`, `4x4.Conv`, `{r}x{r}.Conv0_up`, `{r}x{r}.Conv1` (r = 8 … resolution), `ToRGB_lod{R−s}` (s = 2 … R).
#[derive(Debug)]
pub struct Generator {
    cfg: NetConfig,
    /// 4×4/Dense: weight `[16·nf(1), nz]`, bias `[nf(1)]` added after the reshape to `[nf(1), 4, 4]`.
    dense: EqDense,
    conv4: EqConv2d,
    /// Index `s − 3` holds the block of log2-resolution `s`.
    blocks: Vec<UpBlock>,
    /// Index `s − 2` holds ToRGB of log2-resolution `s` (TF scope `ToRGB_lod{R−s}`).
    torgb: Vec<EqConv2d>,
    kernels: Kernels,
}

impl Generator {
    /// Builds G under `vs` (e.g. `vs.root() / "G"`). Panics on an invalid `cfg`: call [`NetConfig::validate`] first.
    pub fn new(vs: &nn::Path, cfg: &NetConfig) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("Generator::new: {e}");
        }
        let r_log2 = cfg.log2_res();
        let nf1 = cfg.nf(1);
        let p4 = vs / "4x4";
        // docs/spec/progan_hp.md §1.2: the 4×4 dense uses gain √2/4 (the original Theano code's choice).
        let dense = EqDense::new(&(&p4 / "Dense"), cfg.nz, nf1 * 16, nf1, GAIN_RELU / 4.0);
        let conv4 = EqConv2d::new(&(&p4 / "Conv"), nf1, nf1, 3, GAIN_RELU);
        let blocks = (3..=r_log2)
            .map(|s| {
                let p = vs / format!("{0}x{0}", 1i64 << s);
                UpBlock {
                    conv0_up: EqConv2d::new(
                        &(&p / "Conv0_up"),
                        cfg.nf(s - 2),
                        cfg.nf(s - 1),
                        3,
                        GAIN_RELU,
                    ),
                    conv1: EqConv2d::new(
                        &(&p / "Conv1"),
                        cfg.nf(s - 1),
                        cfg.nf(s - 1),
                        3,
                        GAIN_RELU,
                    ),
                }
            })
            .collect();
        // docs/spec/progan_hp.md §1.3: ToRGB is a linear 1×1 conv with gain 1.
        let torgb = (2..=r_log2)
            .map(|s| {
                let p = vs / format!("ToRGB_lod{}", r_log2 - s);
                EqConv2d::new(&p, cfg.nf(s - 1), cfg.num_channels, 1, 1.0)
            })
            .collect();
        Self {
            cfg: cfg.clone(),
            dense,
            conv4,
            blocks,
            torgb,
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

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Pixel norm as the chosen kernels compute it.
    fn pixel_norm(&self, x: &Tensor) -> Tensor {
        match self.kernels {
            Kernels::Fast => native::pixel_norm(x, EPSILON),
            Kernels::Plain => pixel_norm(x),
        }
    }

    /// Full-resolution images `[N, C, R, R]` at level of detail `lod` (docs/spec/progan_hp.md §1.4). `normalize_latents`: pixel-norm
    /// z first (true in training; tools that feed pre-normalised z turn it off, docs/spec/progan_hp.md §7.1).
    pub fn forward(&self, z: &Tensor, lod: f64, normalize_latents: bool) -> Tensor {
        self.run(z, lod, &[], normalize_latents, true)
            .0
            .expect("the image is requested")
    }

    /// The activations of the requested HP layers (1-based, docs/spec/progan_hp.md §1.3 / §15.1; taken after pixel norm; the last
    /// index `2R−1` is the lod-blended RGB output at full resolution), in the order requested (repeats allowed).
    /// Computes only up to the deepest requested layer. A convolution layer above the active resolution is still
    /// computed when asked for (it is a well-defined function of z); the trainer's lod gate gives it weight 0, so
    /// it should not ask. Panics on an index outside `1..=2R−1` (validate with [`NetConfig::check_hp_layers`]).
    pub fn hp_layers(
        &self,
        z: &Tensor,
        lod: f64,
        layers: &[usize],
        normalize_latents: bool,
    ) -> Vec<Tensor> {
        self.run(z, lod, layers, normalize_latents, false).1
    }

    /// The image and the requested HP layers from one pass (the G step: adversarial image + HP centre activations).
    pub fn forward_with_layers(
        &self,
        z: &Tensor,
        lod: f64,
        layers: &[usize],
        normalize_latents: bool,
    ) -> (Tensor, Vec<Tensor>) {
        let (img, acts) = self.run(z, lod, layers, normalize_latents, true);
        (img.expect("the image is requested"), acts)
    }

    fn run(
        &self,
        z: &Tensor,
        lod: f64,
        layers: &[usize],
        normalize_latents: bool,
        want_image: bool,
    ) -> (Option<Tensor>, Vec<Tensor>) {
        let cfg = &self.cfg;
        let (lo, alpha) = cfg.split_lod(lod);
        let r_log2 = cfg.log2_res();
        let top = r_log2 - lo; // highest active log2-resolution
        let rgb_layer = cfg.num_hp_layers();
        if let Err(e) = cfg.check_hp_layers(layers) {
            panic!("Generator::hp_layers: {e}");
        }
        let (zn, zc) = z.size2().expect("G expects latents [N, nz]");
        assert_eq!(
            zc, cfg.nz,
            "G expects latents [N, {}], got [{zn}, {zc}]",
            cfg.nz
        );
        let need_image = want_image || layers.contains(&rgb_layer);
        let deepest_conv_stage = layers
            .iter()
            .filter(|&&l| l != rgb_layer)
            .map(|&l| cfg.hp_layer_stage(l))
            .max();
        let last_stage = match (deepest_conv_stage, need_image) {
            (Some(s), true) => s.max(top),
            (Some(s), false) => s,
            (None, true) => top,
            (None, false) => return (None, Vec::new()),
        };

        // acts[l] = activation of HP layer l (1-based), kept only when requested.
        let mut acts: Vec<Option<Tensor>> = (0..=rgb_layer).map(|_| None).collect();
        let mut keep = |l: usize, x: &Tensor| {
            if layers.contains(&l) {
                acts[l] = Some(x.shallow_clone());
            }
        };
        // Block outputs h_s, index s − 2, for the ToRGB heads.
        let mut h: Vec<Tensor> = Vec::with_capacity((last_stage - 1) as usize);

        // docs/spec/progan_hp.md §1.3 layer 1: [pixel-norm z →] dense → reshape [nf(1), 4, 4] → bias → lrelu → PN.
        let x = if normalize_latents {
            self.pixel_norm(z)
        } else {
            z.shallow_clone()
        };
        let nf1 = cfg.nf(1);
        let x = self.dense.matmul(&x).view([-1, nf1, 4, 4]);
        let x = match self.kernels {
            Kernels::Fast => native::channels_last(&x),
            Kernels::Plain => x,
        };
        let x = self.pixel_norm(&lrelu(&(x + self.dense.bias.view([1, -1, 1, 1]))));
        keep(1, &x);
        let mut x = self.pixel_norm(&lrelu(&self.conv4.forward(&x)));
        keep(2, &x);
        h.push(x.shallow_clone());
        for s in 3..=last_stage {
            let b = &self.blocks[(s - 3) as usize];
            // docs/spec/progan_hp.md §15.5: nearest ×2 → conv (the fused TF op, with the kernel rotated 180°) → bias → lrelu → PN.
            x = self.pixel_norm(&lrelu(&b.conv0_up.up_conv(&x, self.kernels)));
            keep((2 * s - 3) as usize, &x);
            x = self.pixel_norm(&lrelu(&b.conv1.forward(&x)));
            keep((2 * s - 2) as usize, &x);
            h.push(x.shallow_clone());
        }

        let img = need_image.then(|| {
            // docs/spec/progan_hp.md §1.4: img = lerp(ToRGB_r(h_r), up2(ToRGB_{r−1}(h_{r−1})), α), then nearest ×2^L to full size.
            let mut img = self.torgb[(top - 2) as usize].forward(&h[(top - 2) as usize]);
            if alpha > 0.0 {
                let low = self.torgb[(top - 3) as usize].forward(&h[(top - 3) as usize]);
                img = lerp(&img, &upscale(&low, 2), alpha);
            }
            // NCHW out, whatever the layout inside: callers may view the pixels (3 channels: a small copy).
            upscale(&img, 1 << lo).contiguous()
        });
        if let Some(img) = &img {
            if layers.contains(&rgb_layer) {
                acts[rgb_layer] = Some(img.shallow_clone());
            }
        }
        let out = layers
            .iter()
            .map(|&l| {
                acts[l]
                    .as_ref()
                    .expect("every requested layer was computed")
                    .shallow_clone()
            })
            .collect();
        (img.filter(|_| want_image), out)
    }

    /// One row per trainable layer at full resolution (the `train --dry-run` summary).
    pub fn layer_info(&self) -> Vec<LayerInfo> {
        let cfg = &self.cfg;
        let r_log2 = cfg.log2_res();
        let mut rows = vec![
            LayerInfo {
                name: "4x4/Dense".into(),
                shape: vec![cfg.nf(1), 4, 4],
                params: self.dense.num_params(),
            },
            LayerInfo {
                name: "4x4/Conv".into(),
                shape: vec![cfg.nf(1), 4, 4],
                params: self.conv4.num_params(),
            },
        ];
        for (i, b) in self.blocks.iter().enumerate() {
            let res = 1i64 << (i + 3);
            for (name, l) in [("Conv0_up", &b.conv0_up), ("Conv1", &b.conv1)] {
                rows.push(LayerInfo {
                    name: format!("{res}x{res}/{name}"),
                    shape: vec![l.out_channels(), res, res],
                    params: l.num_params(),
                });
            }
        }
        for (i, l) in self.torgb.iter().enumerate() {
            let s = i as i64 + 2;
            rows.push(LayerInfo {
                name: format!("ToRGB_lod{}", r_log2 - s),
                shape: vec![cfg.num_channels, 1 << s, 1 << s],
                params: l.num_params(),
            });
        }
        rows
    }

    /// Trainable parameters of G.
    pub fn num_params(&self) -> i64 {
        self.layer_info().iter().map(|r| r.params).sum()
    }
}
