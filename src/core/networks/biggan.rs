//! The pretrained BigGAN generator of the direction-discovery experiment (docs/spec/progan_hp.md §11): BigGAN-PyTorch's
//! `Generator` at 128×128 as the "138k" checkpoint was trained (`scripts/launch_BigGAN_bs256x8.sh`), evaluated frozen
//! and in eval mode. Only the forward pass exists here; the weights come from a `G_ema.pth` state dict
//! (`io::torch_load`) and are never trained.
//!
//! # The network, for `ch` = 96 (the checkpoint), `ch` = 4 in the tests
//!
//! - **Latents.** z (dim_z 120) is split into `z_chunks` = blocks + 1 = 6 chunks of 20 (BigGAN's hierarchical z).
//!   The class goes through `shared`, a plain embedding table `[n_classes, shared_dim]`, giving y.
//! - **Input.** `linear` (spectrally normalised, with bias) maps the first chunk to `16·ch·4·4`, viewed as
//!   `[16·ch, 4, 4]`.
//! - **Blocks.** Block i (`blocks.i.0`) takes `[in_i, r, r]` to `[out_i, 2r, 2r]`; at 128² the channels are `ch ·`
//!   16→16, 16→8, 8→4, 4→2, 2→1. Its conditioning vector is `cat(y, z chunk i+1)`. Inside:
//!   `bn1` → ReLU → nearest ×2 → `conv1` (3×3) → `bn2` → ReLU → `conv2` (3×3), plus the shortcut nearest ×2 →
//!   `conv_sc` (1×1). Every conv is spectrally normalised and has a bias.
//! - **Class-conditional batch norm** (`bn1`, `bn2`): `BN(x) · (1 + gain(c)) + bias(c)`, with `BN` the eval-mode
//!   normalisation by the stored statistics (`stored_mean`, `stored_var`, ε [`BN_EPS`]) and `gain`, `bias` spectrally
//!   normalised linear maps without bias.
//! - **Self-attention** (`blocks.i.1`) after the block whose output is `attention_res`² (64²): 1×1 convolutions θ
//!   (C/8), φ (C/8), g (C/2) without bias, φ and g max-pooled 2×2; `β = softmax_rows(θᵀ φ)`; output
//!   `x + γ · o(g βᵀ)` with o a 1×1 conv C/2 → C and γ a learnt scalar.
//! - **Output** (`output_layer`): batch norm with a learnt gain and bias (`.0`, ε 1e-5) → ReLU → 3×3 conv to RGB
//!   (`.2`) → tanh. Images are in [-1, 1].
//!
//! # Spectral norm in eval mode
//!
//! Each spectrally normalised layer stores its weight W, a left singular vector estimate `u0` `[1, out]` and the
//! last estimate `sv0` (logged by the reference, unused by the forward). Even in eval mode BigGAN-PyTorch runs one
//! power iteration from the stored u0 at every call, without storing the result: with W viewed as `[out, fan_in]`,
//! `v = n(u0 W)`, `u = n(v Wᵀ)`, `σ = (v Wᵀ) uᵀ`, where `n(x) = x / max(‖x‖, ε)` (ε [`SN_EPS`]), and the layer uses
//! `W / σ`. As u0 never changes in eval mode, σ is a constant: it is computed once at load time, on the CPU in f32,
//! and the layers keep `W / σ` (the forward runs 5× per discovery step).
//!
//! The tensor names are the reference's state-dict keys (`linear.weight`, `blocks.3.1.theta.u0`,
//! `output_layer.0.stored_var`, …), checked one by one against the configuration at load time.

use crate::io::torch_load;
use anyhow::{anyhow, ensure, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The spectral-norm ε of the 138k run (`--SN_eps 1e-6`).
pub const SN_EPS: f64 = 1e-6;
/// The batch-norm ε of the 138k run (`--BN_eps 1e-5`; the output layer's batch norm has the same default).
pub const BN_EPS: f64 = 1e-5;
/// Side of the first feature map.
const BOTTOM: i64 = 4;
/// How many names each list of a key-mismatch error shows (shapes: half as many).
const SHOWN: usize = 6;

/// The shape of a BigGAN-PyTorch generator with hierarchical z and a shared class embedding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BigGanConfig {
    /// Channel multiplier (`G_ch`).
    pub ch: i64,
    /// Latent size, a multiple of [`BigGanConfig::z_chunks`].
    pub dim_z: i64,
    /// Size of the class embedding.
    pub shared_dim: i64,
    pub n_classes: i64,
    /// Output side: 32, 64, 128, 256 or 512 (the checkpoint: 128).
    pub resolution: i64,
    /// Output side of the block followed by self-attention; 0 for none.
    pub attention_res: i64,
}

impl BigGanConfig {
    /// The "138k" ImageNet checkpoint's settings: ch 96, dim_z 120, shared_dim 128, 1000 classes, 128², attention at 64.
    pub fn biggan128() -> Self {
        Self {
            ch: 96,
            dim_z: 120,
            shared_dim: 128,
            n_classes: 1000,
            resolution: 128,
            attention_res: 64,
        }
    }

    /// Number of residual blocks: the 4×4 input doubles to the resolution (5 at 128²).
    pub fn num_blocks(&self) -> i64 {
        (63 - (self.resolution / BOTTOM).max(1).leading_zeros() as i64).max(0)
    }

    /// Chunks z is split into: one for the input layer and one per block (6 at 128²).
    pub fn z_chunks(&self) -> i64 {
        self.num_blocks() + 1
    }

    /// Size of one z chunk (20 for dim_z 120 at 128²).
    pub fn chunk_size(&self) -> i64 {
        self.dim_z / self.z_chunks()
    }

    /// Output side of block `i`.
    fn block_resolution(&self, i: i64) -> i64 {
        (2 * BOTTOM) << i
    }

    /// `(in, out)` channels of each block.
    fn channels(&self) -> Vec<(i64, i64)> {
        let (ins, outs): (&[i64], &[i64]) = match self.resolution {
            32 => (&[4, 4, 4], &[4, 4, 4]),
            64 => (&[16, 16, 8, 4], &[16, 8, 4, 2]),
            128 => (&[16, 16, 8, 4, 2], &[16, 8, 4, 2, 1]),
            256 => (&[16, 16, 8, 8, 4, 2], &[16, 8, 8, 4, 2, 1]),
            _ => (&[16, 16, 8, 8, 4, 2, 1], &[16, 8, 8, 4, 2, 1, 1]),
        };
        ins.iter()
            .zip(outs)
            .map(|(i, o)| (i * self.ch, o * self.ch))
            .collect()
    }

    /// Width of the class-conditional batch norms' input: the embedding and one z chunk.
    fn cond_dim(&self) -> i64 {
        self.shared_dim + self.chunk_size()
    }

    /// Index of the block followed by self-attention.
    fn attention_block(&self) -> Option<i64> {
        (0..self.num_blocks()).find(|&i| self.block_resolution(i) == self.attention_res)
    }

    /// Checks the configuration; errors say which value is wrong.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            matches!(self.resolution, 32 | 64 | 128 | 256 | 512),
            "BigGAN resolution {} is not one of BigGAN-PyTorch's 32, 64, 128, 256, 512",
            self.resolution
        );
        ensure!(
            self.ch >= 1 && self.shared_dim >= 1 && self.n_classes >= 1,
            "BigGAN ch {}, shared_dim {} and n_classes {} must all be at least 1",
            self.ch,
            self.shared_dim,
            self.n_classes
        );
        ensure!(
            self.dim_z >= self.z_chunks() && self.dim_z % self.z_chunks() == 0,
            "BigGAN dim_z {} does not split into {} equal chunks (one per block and one for the input layer)",
            self.dim_z,
            self.z_chunks()
        );
        if self.attention_res != 0 {
            let i = self.attention_block().ok_or_else(|| {
                anyhow!(
                    "BigGAN attention_res {} is not the output side of a block (8 … {}), or 0 for none",
                    self.attention_res,
                    self.resolution
                )
            })?;
            ensure!(
                self.channels()[i as usize].1 >= 8,
                "BigGAN ch {} is too small for attention at {}: the attention needs 8 channels there",
                self.ch,
                self.attention_res
            );
        }
        Ok(())
    }

    /// Every tensor of the state dict with its shape, in the reference's order.
    fn expected_keys(&self) -> Vec<(String, Vec<i64>)> {
        let mut keys = Vec::new();
        let mut sn = |prefix: &str, shape: Vec<i64>, bias: bool| {
            let out = shape[0];
            keys.push((format!("{prefix}.weight"), shape));
            if bias {
                keys.push((format!("{prefix}.bias"), vec![out]));
            }
            keys.push((format!("{prefix}.u0"), vec![1, out]));
            keys.push((format!("{prefix}.sv0"), vec![1]));
        };
        let (cond, ch) = (self.cond_dim(), self.ch);
        let first = self.channels()[0].0 * BOTTOM * BOTTOM;
        sn("linear", vec![first, self.chunk_size()], true);
        let mut plain = vec![(
            "shared.weight".to_string(),
            vec![self.n_classes, self.shared_dim],
        )];
        for (i, (cin, cout)) in self.channels().into_iter().enumerate() {
            let p = format!("blocks.{i}.0");
            sn(&format!("{p}.conv1"), vec![cout, cin, 3, 3], true);
            sn(&format!("{p}.conv2"), vec![cout, cout, 3, 3], true);
            sn(&format!("{p}.conv_sc"), vec![cout, cin, 1, 1], true);
            for (bn, c) in [("bn1", cin), ("bn2", cout)] {
                plain.push((format!("{p}.{bn}.stored_mean"), vec![c]));
                plain.push((format!("{p}.{bn}.stored_var"), vec![c]));
                sn(&format!("{p}.{bn}.gain"), vec![c, cond], false);
                sn(&format!("{p}.{bn}.bias"), vec![c, cond], false);
            }
            if self.attention_block() == Some(i as i64) {
                let a = format!("blocks.{i}.1");
                plain.push((format!("{a}.gamma"), vec![]));
                sn(&format!("{a}.theta"), vec![cout / 8, cout, 1, 1], false);
                sn(&format!("{a}.phi"), vec![cout / 8, cout, 1, 1], false);
                sn(&format!("{a}.g"), vec![cout / 2, cout, 1, 1], false);
                sn(&format!("{a}.o"), vec![cout, cout / 2, 1, 1], false);
            }
        }
        for name in ["gain", "bias", "stored_mean", "stored_var"] {
            plain.push((format!("output_layer.0.{name}"), vec![ch]));
        }
        sn("output_layer.2", vec![3, ch, 3, 3], true);
        keys.extend(plain);
        keys
    }

    fn describe(&self) -> String {
        let att = match self.attention_res {
            0 => "no attention".to_string(),
            r => format!("attention at {r}"),
        };
        format!(
            "BigGAN {0}×{0}, ch {1}, dim_z {2}, shared_dim {3}, {4} classes, {att}",
            self.resolution, self.ch, self.dim_z, self.shared_dim, self.n_classes
        )
    }
}

/// The state dict being turned into layers: tensors are taken out by name.
struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn take(&mut self, name: &str) -> Tensor {
        // check_keys ran first: every expected name is there with its shape.
        self.0
            .remove(name)
            .unwrap_or_else(|| panic!("internal error: '{name}' was checked but is gone"))
    }

    /// `W / σ` of the spectrally normalised layer `prefix` (see the module documentation).
    fn spectral(&mut self, prefix: &str) -> Tensor {
        let w = self.take(&format!("{prefix}.weight"));
        let u0 = self.take(&format!("{prefix}.u0"));
        let m = w.reshape([w.size()[0], -1]);
        let n = |x: Tensor| {
            let norm = x.norm_scalaropt_dim(2, [1], true).clamp_min(SN_EPS);
            x / norm
        };
        let v = n(u0.mm(&m));
        let u = n(v.mm(&m.tr()));
        let sigma = v.mm(&m.tr()).mm(&u.tr()).squeeze();
        w / sigma
    }
}

/// A spectrally normalised convolution (stride 1, "same" padding) with `W / σ` precomputed.
struct Conv {
    w: Tensor,
    b: Option<Tensor>,
}

impl Conv {
    fn load(sd: &mut Weights, prefix: &str, bias: bool, device: Device) -> Self {
        let w = sd.spectral(prefix).to_device(device);
        let b = bias.then(|| sd.take(&format!("{prefix}.bias")).to_device(device));
        Conv { w, b }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let pad = self.w.size()[3] / 2;
        x.conv2d(&self.w, self.b.as_ref(), [1, 1], [pad, pad], [1, 1], 1)
    }
}

/// Eval-mode batch norm by stored statistics, with an optional learnt affine map (the output layer's).
struct BatchNorm {
    mean: Tensor,
    var: Tensor,
    gain: Option<Tensor>,
    bias: Option<Tensor>,
}

impl BatchNorm {
    fn load(sd: &mut Weights, prefix: &str, affine: bool, device: Device) -> Self {
        let mut t = |name: &str| sd.take(&format!("{prefix}.{name}")).to_device(device);
        let (mean, var) = (t("stored_mean"), t("stored_var"));
        let (gain, bias) = if affine {
            (Some(t("gain")), Some(t("bias")))
        } else {
            (None, None)
        };
        BatchNorm {
            mean,
            var,
            gain,
            bias,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.batch_norm(
            self.gain.as_ref(),
            self.bias.as_ref(),
            Some(&self.mean),
            Some(&self.var),
            false,
            0.1,
            BN_EPS,
            true,
        )
    }
}

/// Class-conditional batch norm: `BN(x) · (1 + gain(c)) + bias(c)`.
struct CondBatchNorm {
    bn: BatchNorm,
    gain: Tensor,
    bias: Tensor,
}

impl CondBatchNorm {
    fn load(sd: &mut Weights, prefix: &str, device: Device) -> Self {
        CondBatchNorm {
            bn: BatchNorm::load(sd, prefix, false, device),
            gain: sd.spectral(&format!("{prefix}.gain")).to_device(device),
            bias: sd.spectral(&format!("{prefix}.bias")).to_device(device),
        }
    }

    fn forward(&self, x: &Tensor, c: &Tensor) -> Tensor {
        let n = c.size()[0];
        let gain = (c.linear::<Tensor>(&self.gain, None) + 1.0).view([n, -1, 1, 1]);
        let bias = c.linear::<Tensor>(&self.bias, None).view([n, -1, 1, 1]);
        self.bn.forward(x) * gain + bias
    }
}

/// One residual up-sampling block.
struct Block {
    bn1: CondBatchNorm,
    conv1: Conv,
    bn2: CondBatchNorm,
    conv2: Conv,
    conv_sc: Conv,
}

fn upsample(x: &Tensor) -> Tensor {
    let s = x.size();
    x.upsample_nearest2d([s[2] * 2, s[3] * 2], 2.0, 2.0)
}

impl Block {
    fn load(sd: &mut Weights, prefix: &str, device: Device) -> Self {
        Block {
            conv1: Conv::load(sd, &format!("{prefix}.conv1"), true, device),
            conv2: Conv::load(sd, &format!("{prefix}.conv2"), true, device),
            conv_sc: Conv::load(sd, &format!("{prefix}.conv_sc"), true, device),
            bn1: CondBatchNorm::load(sd, &format!("{prefix}.bn1"), device),
            bn2: CondBatchNorm::load(sd, &format!("{prefix}.bn2"), device),
        }
    }

    fn forward(&self, x: &Tensor, c: &Tensor) -> Tensor {
        let h = upsample(&self.bn1.forward(x, c).relu());
        let h = self.conv1.forward(&h);
        let h = self.conv2.forward(&self.bn2.forward(&h, c).relu());
        h + self.conv_sc.forward(&upsample(x))
    }
}

/// SAGAN self-attention.
struct Attention {
    theta: Conv,
    phi: Conv,
    g: Conv,
    o: Conv,
    gamma: Tensor,
}

impl Attention {
    fn load(sd: &mut Weights, prefix: &str, device: Device) -> Self {
        Attention {
            theta: Conv::load(sd, &format!("{prefix}.theta"), false, device),
            phi: Conv::load(sd, &format!("{prefix}.phi"), false, device),
            g: Conv::load(sd, &format!("{prefix}.g"), false, device),
            o: Conv::load(sd, &format!("{prefix}.o"), false, device),
            gamma: sd.take(&format!("{prefix}.gamma")).to_device(device),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        let (n, c, hw) = (s[0], s[1], s[2] * s[3]);
        let pool = |t: Tensor| t.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        let theta = self.theta.forward(x).view([n, c / 8, hw]);
        let phi = pool(self.phi.forward(x)).view([n, c / 8, hw / 4]);
        let g = pool(self.g.forward(x)).view([n, c / 2, hw / 4]);
        let beta = theta.transpose(1, 2).bmm(&phi).softmax(-1, Kind::Float);
        let o = self
            .o
            .forward(&g.bmm(&beta.transpose(1, 2)).view([n, c / 2, s[2], s[3]]));
        &self.gamma * o + x
    }
}

/// A frozen, pretrained BigGAN-PyTorch generator in eval mode.
pub struct BigGan {
    cfg: BigGanConfig,
    device: Device,
    shared: Tensor,
    linear_w: Tensor,
    linear_b: Tensor,
    blocks: Vec<(Block, Option<Attention>)>,
    out_bn: BatchNorm,
    out_conv: Conv,
}

impl std::fmt::Debug for BigGan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {:?}", self.cfg.describe(), self.device)
    }
}

/// `a, b, c, … and N more`, showing at most `shown` items.
fn listing(names: &[String], shown: usize) -> String {
    let head = names[..names.len().min(shown)].join(", ");
    match names.len().saturating_sub(shown) {
        0 => head,
        more => format!("{head} and {more} more"),
    }
}

/// Errors unless the state dict holds exactly the expected keys with their shapes, naming every problem at once.
fn check_keys(sd: &HashMap<String, Tensor>, cfg: &BigGanConfig) -> Result<()> {
    let expected = cfg.expected_keys();
    let names: std::collections::HashSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    let (mut missing, mut wrong) = (Vec::new(), Vec::new());
    for (key, shape) in &expected {
        match sd.get(key) {
            None => missing.push(key.clone()),
            Some(t) if t.kind() != Kind::Float => wrong.push(format!(
                "{key} is {:?} {:?}, expected float {shape:?}",
                t.kind(),
                t.size()
            )),
            Some(t) if t.size() != *shape => {
                wrong.push(format!("{key} is {:?}, expected {shape:?}", t.size()))
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<String> = sd
        .keys()
        .filter(|k| !names.contains(k.as_str()))
        .cloned()
        .collect();
    extra.sort();
    if missing.is_empty() && extra.is_empty() && wrong.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    for (list, what, shown) in [
        (&missing, "missing", SHOWN),
        (&extra, "unexpected", SHOWN),
        (&wrong, "of the wrong shape or type", SHOWN / 2),
    ] {
        if !list.is_empty() {
            parts.push(format!("{} {what} ({})", list.len(), listing(list, shown)));
        }
    }
    anyhow::bail!(
        "the state dict does not match {}: keys {}; is it a BigGAN-PyTorch generator state dict (G.pth or G_ema.pth) \
         with these settings?",
        cfg.describe(),
        parts.join("; ")
    )
}

/// The configuration a state dict was saved with, from the shapes of `linear.weight` (16·ch·16 × chunk) and
/// `shared.weight` (n_classes × shared_dim), the number of blocks and the attention block.
fn infer_config(sd: &HashMap<String, Tensor>) -> Result<BigGanConfig> {
    let shape = |k: &str| {
        sd.get(k).map(Tensor::size).ok_or_else(|| {
            anyhow!(
                "the state dict has no '{k}': not a BigGAN-PyTorch generator state dict (G.pth or G_ema.pth)"
            )
        })
    };
    let (linear, shared) = (shape("linear.weight")?, shape("shared.weight")?);
    let blocks = (0..)
        .take_while(|i| sd.contains_key(&format!("blocks.{i}.0.conv1.weight")))
        .count() as i64;
    let attention = (0..blocks).find(|i| sd.contains_key(&format!("blocks.{i}.1.gamma")));
    // The first block's input has 16·ch channels (4·ch at 32², three blocks), on 4×4.
    let rows_per_ch = (if blocks == 3 { 4 } else { 16 }) * BOTTOM * BOTTOM;
    ensure!(
        linear.len() == 2 && shared.len() == 2 && linear[0] > 0 && linear[0] % rows_per_ch == 0,
        "linear.weight {linear:?} / shared.weight {shared:?} do not have BigGAN-PyTorch's shapes \
         ([16·ch·16, chunk], [n_classes, shared_dim])"
    );
    Ok(BigGanConfig {
        ch: linear[0] / rows_per_ch,
        dim_z: linear[1] * (blocks + 1),
        shared_dim: shared[1],
        n_classes: shared[0],
        resolution: BOTTOM << blocks,
        attention_res: attention.map_or(0, |i| (2 * BOTTOM) << i),
    })
}

impl BigGan {
    /// Loads a state dict (io::torch_load) and checks every key and shape against the config; errors name the
    /// missing, extra and mis-shaped keys (all of them, in one message, truncated sensibly) and the file.
    pub fn load(path: &Path, cfg: &BigGanConfig, device: Device) -> Result<BigGan> {
        cfg.validate()?;
        let sd = torch_load::load_state_dict(path)?;
        Self::from_state_dict(sd, cfg, device).with_context(|| format!("{}", path.display()))
    }

    /// Infers ch from `linear.weight`'s shape (16·ch·16 rows) and n_classes from `shared.weight`, then loads; so
    /// tiny test models load with the same call.
    pub fn load_inferring(path: &Path, device: Device) -> Result<BigGan> {
        let sd = torch_load::load_state_dict(path)?;
        let map: HashMap<String, Tensor> = sd.into_iter().collect();
        let cfg = infer_config(&map)
            .and_then(|c| c.validate().map(|_| c))
            .with_context(|| format!("{}", path.display()))?;
        Self::from_map(map, &cfg, device).with_context(|| format!("{}", path.display()))
    }

    fn from_state_dict(
        sd: Vec<(String, Tensor)>,
        cfg: &BigGanConfig,
        device: Device,
    ) -> Result<BigGan> {
        Self::from_map(sd.into_iter().collect(), cfg, device)
    }

    fn from_map(
        map: HashMap<String, Tensor>,
        cfg: &BigGanConfig,
        device: Device,
    ) -> Result<BigGan> {
        check_keys(&map, cfg)?;
        let mut sd = Weights(map);
        // No tensor read from the file requires grad, and nothing here records a graph: the layers are constants.
        tch::no_grad(|| {
            let linear_w = sd.spectral("linear").to_device(device);
            let linear_b = sd.take("linear.bias").to_device(device);
            let blocks = (0..cfg.num_blocks())
                .map(|i| {
                    let block = Block::load(&mut sd, &format!("blocks.{i}.0"), device);
                    let attention = (cfg.attention_block() == Some(i))
                        .then(|| Attention::load(&mut sd, &format!("blocks.{i}.1"), device));
                    (block, attention)
                })
                .collect();
            Ok(BigGan {
                cfg: cfg.clone(),
                device,
                shared: sd.take("shared.weight").to_device(device),
                linear_w,
                linear_b,
                blocks,
                out_bn: BatchNorm::load(&mut sd, "output_layer.0", true, device),
                out_conv: Conv::load(&mut sd, "output_layer.2", true, device),
            })
        })
    }

    pub fn config(&self) -> &BigGanConfig {
        &self.cfg
    }

    /// z [N, dim_z] float, classes [N] int64 → images [N, 3, res, res] in [-1, 1]. Deterministic (eval mode, no
    /// state updated), differentiable w.r.t. z (the caller runs the Hessian Penalty through it with frozen weights:
    /// weights must not require grad). Inputs are moved to the generator's device.
    pub fn forward(&self, z: &Tensor, classes: &Tensor) -> Tensor {
        let n = z.size()[0];
        assert_eq!(
            z.size(),
            [n, self.cfg.dim_z],
            "BigGAN z must be [N, {}]",
            self.cfg.dim_z
        );
        assert_eq!(
            classes.size(),
            [n],
            "BigGAN classes must be [N] for z [N, …]"
        );
        let z = z.to_device(self.device).to_kind(Kind::Float);
        let classes = classes.to_device(self.device).to_kind(Kind::Int64);
        let y = Tensor::embedding(&self.shared, &classes, -1, false, false);
        let zs = z.split(self.cfg.chunk_size(), 1);
        let mut h = zs[0]
            .linear(&self.linear_w, Some(&self.linear_b))
            .view([n, -1, BOTTOM, BOTTOM]);
        for (i, (block, attention)) in self.blocks.iter().enumerate() {
            let c = Tensor::cat(&[&y, &zs[i + 1]], 1);
            h = block.forward(&h, &c);
            if let Some(a) = attention {
                h = a.forward(&h);
            }
        }
        self.out_conv
            .forward(&self.out_bn.forward(&h).relu())
            .tanh()
    }
}
