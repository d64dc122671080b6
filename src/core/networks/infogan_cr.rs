//! The InfoGAN-CR networks (docs/spec/geometry_infogancr.md §B.1): a generator with batch norm, a discriminator
//! whose trunk is shared by the real/fake head D and the code head Q, and the contrastive discriminator H that
//! sees two images stacked on the channel axis and tells which code they share. D, Q and H are spectrally
//! normalised (§B.6); G is not.
//!
//! The reference's dSprites networks are defined at 64×64. For quick CPU runs the same design is built at 32×32 by
//! dropping G's first hidden transposed convolution and D's first convolution; at 64×64 the layers are the
//! reference's.
//!
//! Layout NCHW, every kernel 4×4 stride 2 with one pixel of zero padding (TF's SAME for these sizes), weights drawn
//! from N(0, 0.02), biases 0, leaky ReLU slope 0.2, batch norm after the activation (momentum 0.9 in TF's
//! convention, 0.1 in libtorch's; ε 1e-5; scale 1 and offset 0 to start). G ends in a sigmoid: its images are in
//! [0, 1], as dSprites' binary pixels are.

use super::super::native;
use tch::{nn, Tensor};

/// Standard deviation of the initial weights (§B.1).
pub const INIT_STD: f64 = 0.02;
/// Slope of the leaky ReLUs (§B.1).
pub const LRELU_SLOPE: f64 = 0.2;
/// Units of the trunk's and Q's hidden dense layers (`q_l_dim`, §B.1).
pub const HIDDEN: i64 = 128;
/// TF's `l2_normalize` floor on the squared norm.
const L2_EPS: f64 = 1e-12;

/// The shape of one InfoGAN-CR model: `codes` regularised uniform codes followed by `noise` nuisance dimensions
/// (the generator's input is `[c_1..c_K, z_1..z_N]`), images of `channels` × `resolution`².
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrNetConfig {
    pub codes: i64,
    pub noise: i64,
    pub channels: i64,
    pub resolution: i64,
}

impl CrNetConfig {
    /// The generator's input width.
    pub fn nz(&self) -> i64 {
        self.codes + self.noise
    }

    /// Channels of G's hidden transposed convolutions (4×4 → … → resolution/2) and of D's convolutions
    /// (resolution → … → 4×4): at 64² the reference's [64, 32, 32] and [32, 32, 64, 64].
    fn widths(&self) -> (Vec<i64>, Vec<i64>) {
        let steps = (self.resolution as f64).log2() as usize - 2;
        let g = [64, 32, 32][..steps - 1].to_vec();
        let d = [32, 32, 64, 64][4 - steps..].to_vec();
        (g, d)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            matches!(self.resolution, 32 | 64),
            "InfoGAN-CR networks are built for 32² or 64² images, not {}²",
            self.resolution
        );
        anyhow::ensure!(
            self.codes >= 2,
            "InfoGAN-CR needs at least 2 codes (the contrastive discriminator tells them apart), not {}",
            self.codes
        );
        anyhow::ensure!(self.noise >= 0, "the noise width must not be negative");
        anyhow::ensure!(
            matches!(self.channels, 1 | 3),
            "images have 1 or 3 channels, not {}",
            self.channels
        );
        Ok(())
    }
}

fn normal(p: &nn::Path, name: &str, dims: &[i64]) -> Tensor {
    p.var(
        name,
        dims,
        nn::Init::Randn {
            mean: 0.0,
            stdev: INIT_STD,
        },
    )
}

fn l2_normalize(x: &Tensor) -> Tensor {
    x * x.square().sum(None).clamp_min(L2_EPS).rsqrt()
}

/// Spectral normalisation of one weight (Miyato et al. 2018 as §B.6 describes it): a persistent estimate `u` of
/// the weight's leading left singular vector, one power iteration per use, and `W / σ` with
/// `σ = uᵀ W v`. The weight is viewed as the matrix `[out, fan_in]`, the transpose of TF's `[fan_in, out]`, which has
/// the same singular values.
///
/// `u` is a non-trainable variable (saved with the snapshot). A forward pass computes `(û, v̂)` from it without
/// storing them, so fake-image and evaluation passes leave it alone; [`SpectralNorm::update`] stores the power
/// iteration's `û`, once per training iteration after the optimiser steps. The power-iteration vectors are treated as
/// constants in the gradient, as the paper's algorithm does.
#[derive(Debug)]
pub struct SpectralNorm {
    pub u: Tensor,
}

impl SpectralNorm {
    fn new(p: &nn::Path, out: i64) -> Self {
        let start = Tensor::randn([out], (tch::Kind::Float, p.device()));
        SpectralNorm {
            u: p.add("sn_u", start, false),
        }
    }

    fn power_iteration(&self, weight: &Tensor) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let m = weight.detach().reshape([weight.size()[0], -1]);
            let v = l2_normalize(&m.tr().mv(&self.u));
            let u = l2_normalize(&m.mv(&v));
            (u, v)
        })
    }

    /// The current estimate of the largest singular value (after one power iteration from `u`).
    pub fn sigma(&self, weight: &Tensor) -> Tensor {
        let (u, v) = self.power_iteration(weight);
        u.dot(&weight.reshape([weight.size()[0], -1]).mv(&v))
    }

    /// `weight / σ`.
    pub fn normalize(&self, weight: &Tensor) -> Tensor {
        weight / self.sigma(weight)
    }

    /// One power iteration stored in `u` (the reference's update op).
    pub fn update(&mut self, weight: &Tensor) {
        let (u, _) = self.power_iteration(weight);
        tch::no_grad(|| self.u.copy_(&u));
    }
}

/// A dense layer, optionally spectrally normalised.
#[derive(Debug)]
pub struct Dense {
    pub weight: Tensor,
    pub bias: Tensor,
    pub sn: Option<SpectralNorm>,
}

impl Dense {
    pub fn new(p: &nn::Path, fan_in: i64, out: i64, spectral: bool) -> Self {
        Dense {
            weight: normal(p, "weight", &[out, fan_in]),
            bias: p.var("bias", &[out], nn::Init::Const(0.0)),
            sn: spectral.then(|| SpectralNorm::new(p, out)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = match &self.sn {
            Some(sn) => sn.normalize(&self.weight),
            None => self.weight.shallow_clone(),
        };
        x.linear(&w, Some(&self.bias))
    }
}

/// A 4×4 stride-2 convolution (halves the size), optionally spectrally normalised.
#[derive(Debug)]
pub struct ConvDown {
    pub weight: Tensor,
    pub bias: Tensor,
    pub sn: Option<SpectralNorm>,
}

impl ConvDown {
    pub fn new(p: &nn::Path, in_c: i64, out_c: i64, spectral: bool) -> Self {
        ConvDown {
            weight: normal(p, "weight", &[out_c, in_c, 4, 4]),
            bias: p.var("bias", &[out_c], nn::Init::Const(0.0)),
            sn: spectral.then(|| SpectralNorm::new(p, out_c)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let w = match &self.sn {
            Some(sn) => sn.normalize(&self.weight),
            None => self.weight.shallow_clone(),
        };
        x.conv2d(&w, Some(&self.bias), [2, 2], [1, 1], [1, 1], 1)
    }
}

/// A 4×4 stride-2 transposed convolution (doubles the size). Weight `[in, out, 4, 4]`, libtorch's layout.
#[derive(Debug)]
pub struct ConvUp {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl ConvUp {
    pub fn new(p: &nn::Path, in_c: i64, out_c: i64) -> Self {
        ConvUp {
            weight: normal(p, "weight", &[in_c, out_c, 4, 4]),
            bias: p.var("bias", &[out_c], nn::Init::Const(0.0)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv_transpose2d(
            &self.weight,
            Some(&self.bias),
            [2, 2],
            [1, 1],
            [0, 0],
            1,
            [1, 1],
        )
    }
}

fn batch_norm(p: &nn::Path, dim: i64, spatial: bool) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        momentum: 0.1,
        eps: 1e-5,
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    if spatial {
        nn::batch_norm2d(p, dim, config)
    } else {
        nn::batch_norm1d(p, dim, config)
    }
}

/// The generator: dense 128 → ReLU → BN, dense 4·4·64 → ReLU → BN, then transposed convolutions with leaky ReLU and
/// BN, and a last one to the image channels with a sigmoid.
#[derive(Debug)]
pub struct CrGenerator {
    pub net: CrNetConfig,
    dense0: Dense,
    bn0: nn::BatchNorm,
    dense1: Dense,
    bn1: nn::BatchNorm,
    ups: Vec<(ConvUp, nn::BatchNorm)>,
    to_image: ConvUp,
}

impl CrGenerator {
    pub fn new(p: &nn::Path, net: &CrNetConfig) -> Self {
        let (widths, _) = net.widths();
        let mut ups = Vec::new();
        let mut in_c = 64;
        for (i, &w) in widths.iter().enumerate() {
            let q = p / format!("up{i}");
            ups.push((ConvUp::new(&q, in_c, w), batch_norm(&(&q / "bn"), w, true)));
            in_c = w;
        }
        CrGenerator {
            net: *net,
            dense0: Dense::new(&(p / "dense0"), net.nz(), HIDDEN, false),
            bn0: batch_norm(&(p / "dense0" / "bn"), HIDDEN, false),
            dense1: Dense::new(&(p / "dense1"), HIDDEN, 64 * 16, false),
            bn1: batch_norm(&(p / "dense1" / "bn"), 64 * 16, false),
            ups,
            to_image: ConvUp::new(&(p / "to_image"), in_c, net.channels),
        }
    }

    /// Images in [0, 1] `[N, C, R, R]` from latents `[N, codes + noise]`. `train` puts batch norm in training mode
    /// (batch statistics, running averages updated); otherwise it uses the running averages.
    pub fn forward_t(&self, latents: &Tensor, train: bool) -> Tensor {
        let x = self
            .dense0
            .forward(latents)
            .relu()
            .apply_t(&self.bn0, train);
        let mut x = self
            .dense1
            .forward(&x)
            .relu()
            .apply_t(&self.bn1, train)
            .view([-1, 64, 4, 4]);
        for (up, bn) in &self.ups {
            x = native::leaky_relu(&up.forward(&x), LRELU_SLOPE).apply_t(bn, train);
        }
        self.to_image.forward(&x).sigmoid()
    }
}

/// Spectrally normalised convolutions from `in_c` channels down to 4×4, then a dense layer of 128: the trunk of
/// D/Q and of H.
#[derive(Debug)]
pub struct Trunk {
    convs: Vec<ConvDown>,
    dense: Dense,
}

impl Trunk {
    fn new(p: &nn::Path, net: &CrNetConfig, in_c: i64) -> Self {
        let (_, widths) = net.widths();
        let mut convs = Vec::new();
        let mut c = in_c;
        for (i, &w) in widths.iter().enumerate() {
            convs.push(ConvDown::new(&(p / format!("conv{i}")), c, w, true));
            c = w;
        }
        Trunk {
            convs,
            dense: Dense::new(&(p / "dense"), c * 16, HIDDEN, true),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut x = x.shallow_clone();
        for conv in &self.convs {
            x = native::leaky_relu(&conv.forward(&x), LRELU_SLOPE);
        }
        native::leaky_relu(&self.dense.forward(&x.flatten(1, -1)), LRELU_SLOPE)
    }

    fn spectral_norms(&mut self) -> Vec<(&mut SpectralNorm, &Tensor)> {
        let mut out: Vec<(&mut SpectralNorm, &Tensor)> = Vec::new();
        for conv in &mut self.convs {
            if let Some(sn) = conv.sn.as_mut() {
                out.push((sn, &conv.weight));
            }
        }
        if let Some(sn) = self.dense.sn.as_mut() {
            out.push((sn, &self.dense.weight));
        }
        out
    }
}

/// D and Q on one trunk: D's logit of "real" (the reference's sigmoid output before the sigmoid) and Q's code
/// estimates (the means of a unit-variance Gaussian).
#[derive(Debug)]
pub struct CrDiscriminator {
    trunk: Trunk,
    d_head: Dense,
    q_hidden: Dense,
    q_out: Dense,
}

impl CrDiscriminator {
    pub fn new(p: &nn::Path, net: &CrNetConfig) -> Self {
        CrDiscriminator {
            trunk: Trunk::new(&(p / "trunk"), net, net.channels),
            d_head: Dense::new(&(p / "d_head"), HIDDEN, 1, true),
            q_hidden: Dense::new(&(p / "q_hidden"), HIDDEN, HIDDEN, true),
            q_out: Dense::new(&(p / "q_out"), HIDDEN, net.codes, true),
        }
    }

    /// (D's logits `[N]`, Q's codes `[N, codes]`) of images in [0, 1].
    pub fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let h = self.trunk.forward(x);
        let logit = self.d_head.forward(&h).squeeze_dim(1);
        let q = self
            .q_out
            .forward(&native::leaky_relu(&self.q_hidden.forward(&h), LRELU_SLOPE));
        (logit, q)
    }

    /// One power iteration for every spectrally normalised layer (after the optimiser steps, §B.1 step 4).
    pub fn update_spectral_norms(&mut self) {
        let mut all = self.trunk.spectral_norms();
        for dense in [&mut self.d_head, &mut self.q_hidden, &mut self.q_out] {
            if let Some(sn) = dense.sn.as_mut() {
                all.push((sn, &dense.weight));
            }
        }
        for (sn, w) in all {
            sn.update(w);
        }
    }
}

/// The contrastive discriminator H: the trunk on two images stacked on the channel axis, then a dense layer
/// (without spectral norm) to one logit per code, "which code do these two images share".
#[derive(Debug)]
pub struct CrJudge {
    trunk: Trunk,
    head: Dense,
}

impl CrJudge {
    pub fn new(p: &nn::Path, net: &CrNetConfig) -> Self {
        CrJudge {
            trunk: Trunk::new(&(p / "trunk"), net, 2 * net.channels),
            head: Dense::new(&(p / "head"), HIDDEN, net.codes, false),
        }
    }

    /// Logits `[N, codes]` for the pairs `(a[n], b[n])`.
    pub fn forward(&self, a: &Tensor, b: &Tensor) -> Tensor {
        self.head
            .forward(&self.trunk.forward(&Tensor::cat(&[a, b], 1)))
    }

    pub fn update_spectral_norms(&mut self) {
        for (sn, w) in self.trunk.spectral_norms() {
            sn.update(w);
        }
    }
}

/// Trainable parameters of G, D/Q and H (weights and biases, BN scales and offsets; not the `u` vectors or the
/// BN running averages).
pub fn parameter_counts(net: &CrNetConfig) -> (i64, i64, i64) {
    let count = |build: &dyn Fn(&nn::Path)| {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        build(&vs.root());
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum::<i64>()
    };
    (
        count(&|p| {
            CrGenerator::new(p, net);
        }),
        count(&|p| {
            CrDiscriminator::new(p, net);
        }),
        count(&|p| {
            CrJudge::new(p, net);
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn dsprites() -> CrNetConfig {
        CrNetConfig {
            codes: 5,
            noise: 5,
            channels: 1,
            resolution: 64,
        }
    }

    #[test]
    fn parameter_counts_follow_the_layer_table() {
        // G: 10·128+128 + 2·128 (BN) + 128·1024+1024 + 2·1024 + (64·64·16+64 + 128) + (64·32·16+32 + 64)
        //    + (32·32·16+32 + 64) + (32·1·16+1)
        let g = 10 * 128
            + 128
            + 256
            + 128 * 1024
            + 1024
            + 2048
            + (64 * 64 * 16 + 64 + 128)
            + (64 * 32 * 16 + 32 + 64)
            + (32 * 32 * 16 + 32 + 64)
            + (32 * 16 + 1);
        // Trunk from c channels: convs 32, 32, 64, 64 (4×4) and dense 64·16 → 128.
        let trunk = |c: i64| {
            (c * 32 * 16 + 32)
                + (32 * 32 * 16 + 32)
                + (32 * 64 * 16 + 64)
                + (64 * 64 * 16 + 64)
                + (1024 * 128 + 128)
        };
        let d = trunk(1) + (128 + 1) + (128 * 128 + 128) + (128 * 5 + 5);
        let h = trunk(2) + (128 * 5 + 5);
        assert_eq!(parameter_counts(&dsprites()), (g, d, h));
    }

    #[test]
    fn shapes_and_ranges() {
        tch::manual_seed(0);
        for res in [32, 64] {
            let net = CrNetConfig {
                resolution: res,
                ..dsprites()
            };
            let vs = nn::VarStore::new(Device::Cpu);
            let g = CrGenerator::new(&(vs.root() / "G"), &net);
            let d = CrDiscriminator::new(&(vs.root() / "D"), &net);
            let h = CrJudge::new(&(vs.root() / "H"), &net);
            let z = Tensor::rand([6, 10], (Kind::Float, Device::Cpu)) * 2 - 1;
            let x = g.forward_t(&z, true);
            assert_eq!(x.size(), [6, 1, res, res]);
            let (lo, hi) = (x.min().double_value(&[]), x.max().double_value(&[]));
            assert!((0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
            let (logit, q) = d.forward(&x);
            assert_eq!((logit.size(), q.size()), (vec![6], vec![6, 5]));
            assert_eq!(h.forward(&x, &x).size(), [6, 5]);
        }
    }

    #[test]
    fn spectral_norm_converges_to_the_largest_singular_value() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = ConvDown::new(&vs.root(), 8, 16, true);
        let mut sn = conv.sn.unwrap();
        let m = conv.weight.reshape([16, -1]);
        let exact = m.svd(true, false).1.double_value(&[0]);
        let sigma = |sn: &SpectralNorm| sn.sigma(&conv.weight).double_value(&[]);
        let first = sigma(&sn);
        // One power iteration from a random u underestimates σ noticeably for a random 16×128 matrix.
        assert!(first < exact * 0.999, "{first} vs {exact}");
        // The forward pass does not move u: the estimate stays where it is without updates.
        assert_eq!(sigma(&sn), first);
        let mut errors = Vec::new();
        for _ in 0..60 {
            sn.update(&conv.weight);
            errors.push((exact - sigma(&sn)) / exact);
        }
        assert!(errors.iter().all(|e| *e > -1e-5), "σ̂ ≤ σ up to rounding");
        assert!(errors[59] < 1e-5, "converged: {:?}", &errors[50..]);
        assert!(errors[59] < errors[0]);
        // The normalised weight has spectral norm 1.
        let normalized = sn.normalize(&conv.weight).reshape([16, -1]);
        let top = normalized.svd(true, false).1.double_value(&[0]);
        assert!((top - 1.0).abs() < 1e-4, "{top}");
    }
}
