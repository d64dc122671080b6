//! Equalised-learning-rate layers and the parameter-free operations of the ProGAN "paper" networks
//! (docs/spec/progan_hp.md §1.2).
//!
//! Every weight is stored as drawn, N(0, 1), and multiplied by `gain / sqrt(fan_in)` on every forward pass, so Adam
//! sees all layers at the same scale (the reference's `use_wscale`). Biases start at zero and are never rescaled.

use super::super::native;
use tch::{nn, Kind, Tensor};

/// The default He gain √2 (docs/spec/progan_hp.md §1.2).
pub const GAIN_RELU: f64 = std::f64::consts::SQRT_2;
/// Pixel-norm and minibatch-stddev epsilon (docs/spec/progan_hp.md §1.1, §1.2).
pub const EPSILON: f64 = 1e-8;
/// Slope of the leaky ReLU in G and D (docs/spec/progan_hp.md §1.1).
pub const LRELU_SLOPE: f64 = 0.2;

/// How the networks run their arithmetic. Both compute the same function (tested to float32 rounding in
/// `tests/networks.rs`); `Plain` is the reference's formulation step by step and serves as the oracle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// Channels-last (NHWC) activations, which libtorch's CPU (oneDNN) and cuDNN convolutions run faster; G's
    /// nearest ×2 + 3×3 conv as one stride-2 transposed 4×4 conv and D's 3×3 conv + 2×2 average pool as one
    /// stride-2 4×4 conv: the reference's fused ops (docs/spec/progan_hp.md §15.5), which do 4/9 of the
    /// multiply-adds of the unfused pair.
    #[default]
    Fast,
    /// NCHW activations and the unfused resampling convolutions.
    Plain,
}

/// A trainable layer's line in the network summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The reference's TF scope, e.g. `8x8/Conv0_up` or `4x4/Q_Encoder/Dense1`.
    pub name: String,
    /// Output shape of one sample at full resolution (`[C, H, W]` or `[features]`).
    pub shape: Vec<i64>,
    /// Trainable parameters (weight + bias); 0 for parameter-free layers.
    pub params: i64,
}

/// Equalised-LR 2-D convolution, stride 1, SAME zero padding (`k/2`), cross-correlation like TF's `conv2d`.
/// Weight `[out, in, k, k]` (tch layout), bias `[out]`.
#[derive(Debug)]
pub struct EqConv2d {
    pub weight: Tensor,
    pub bias: Tensor,
    /// `gain / sqrt(in·k·k)`.
    pub scale: f64,
    kernel: i64,
}

impl EqConv2d {
    /// Creates `weight` and `bias` under `p` (the layer's own scope, e.g. `G.8x8.Conv1`).
    pub fn new(p: &nn::Path, in_c: i64, out_c: i64, kernel: i64, gain: f64) -> Self {
        let weight = p.var(
            "weight",
            &[out_c, in_c, kernel, kernel],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let bias = p.var("bias", &[out_c], nn::Init::Const(0.0));
        let scale = gain / ((in_c * kernel * kernel) as f64).sqrt();
        Self {
            weight,
            bias,
            scale,
            kernel,
        }
    }

    /// The run-time weight `w · gain / sqrt(fan_in)`.
    pub fn scaled_weight(&self) -> Tensor {
        &self.weight * self.scale
    }

    /// Convolution without the bias (for layers that pool or reshape before the bias, docs/spec/progan_hp.md §15.5).
    pub fn conv(&self, x: &Tensor) -> Tensor {
        let pad = self.kernel / 2;
        x.conv2d(
            &self.scaled_weight(),
            None::<Tensor>,
            [1, 1],
            [pad, pad],
            [1, 1],
            1,
        )
    }

    /// Convolution plus bias, in one libtorch call.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let pad = self.kernel / 2;
        x.conv2d(
            &self.scaled_weight(),
            Some(&self.bias),
            [1, 1],
            [pad, pad],
            [1, 1],
            1,
        )
    }

    /// Adds the per-channel bias to an NCHW tensor.
    pub fn add_bias(&self, x: &Tensor) -> Tensor {
        x + self.bias.view([1, -1, 1, 1])
    }

    /// Nearest ×2 upscaling, then this 3×3 convolution and the bias (G's `Conv0_up`). `Fast`: one stride-2
    /// transposed convolution whose 4×4 kernel sums the four 1-pixel shifts of the zero-padded 3×3 kernel, rotated
    /// 180° and with the channel axes swapped (each output pixel of the upscaled conv reads 2×2 distinct input
    /// pixels; `tf_compat::tf_upscale2d_conv2d`).
    pub fn up_conv(&self, x: &Tensor, kernels: Kernels) -> Tensor {
        match kernels {
            Kernels::Plain => self.forward(&upscale(x, 2)),
            Kernels::Fast => {
                let w = self
                    .weight
                    .flip([2, 3])
                    .transpose(0, 1)
                    .constant_pad_nd([1, 1, 1, 1]);
                let k = sum_of_shifts(&w) * self.scale;
                x.conv_transpose2d(&k, Some(&self.bias), [2, 2], [1, 1], [0, 0], 1, [1, 1])
            }
        }
    }

    /// This 3×3 convolution, 2×2 average pooling, then the bias (D's `Conv1_down`). `Fast`: one stride-2 4×4
    /// convolution with a quarter of the four shifts of the zero-padded kernel (`tf_compat::tf_conv2d_downscale2d`).
    pub fn conv_down(&self, x: &Tensor, kernels: Kernels) -> Tensor {
        match kernels {
            Kernels::Plain => self.add_bias(&downscale(&self.conv(x), 2)),
            Kernels::Fast => {
                let k =
                    sum_of_shifts(&self.weight.constant_pad_nd([1, 1, 1, 1])) * (0.25 * self.scale);
                x.conv2d(&k, Some(&self.bias), [2, 2], [1, 1], [1, 1], 1)
            }
        }
    }

    pub fn out_channels(&self) -> i64 {
        self.weight.size()[0]
    }

    pub fn num_params(&self) -> i64 {
        self.weight.numel() as i64 + self.bias.numel() as i64
    }
}

/// Equalised-LR dense layer on the C-major flattening of its input (index `c·H·W + h·W + w`, docs/spec/progan_hp.md §1.2).
/// Weight `[out, in]` (tch/PyTorch `Linear` layout; TF stores `[in, out]`). The bias may have fewer entries than the
/// output when it is added after a reshape (G's 4×4 dense: 8192 outputs, bias per channel = 512).
#[derive(Debug)]
pub struct EqDense {
    pub weight: Tensor,
    pub bias: Tensor,
    /// `gain / sqrt(in)`.
    pub scale: f64,
}

impl EqDense {
    /// `bias_len` = `out_f` for an ordinary dense layer.
    pub fn new(p: &nn::Path, in_f: i64, out_f: i64, bias_len: i64, gain: f64) -> Self {
        let weight = p.var(
            "weight",
            &[out_f, in_f],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let bias = p.var("bias", &[bias_len], nn::Init::Const(0.0));
        Self {
            weight,
            bias,
            scale: gain / (in_f as f64).sqrt(),
        }
    }

    pub fn scaled_weight(&self) -> Tensor {
        &self.weight * self.scale
    }

    /// `flatten(x) @ Wᵀ` without the bias.
    pub fn matmul(&self, x: &Tensor) -> Tensor {
        x.flatten(1, -1)
            .linear(&self.scaled_weight(), None::<Tensor>)
    }

    /// `flatten(x) @ Wᵀ + b` (only when the bias covers every output).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.flatten(1, -1)
            .linear(&self.scaled_weight(), Some(&self.bias))
    }

    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }

    pub fn num_params(&self) -> i64 {
        self.weight.numel() as i64 + self.bias.numel() as i64
    }
}

/// `w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]` over the last two (spatial) dims of a 5×5 kernel: the 4×4
/// kernel of a 3×3 conv fused with 2×2 nearest upscaling or box downscaling (docs/spec/progan_hp.md §15.5).
pub fn sum_of_shifts(w: &Tensor) -> Tensor {
    let lo = |t: &Tensor, d: i64| t.narrow(d, 0, 4);
    let hi = |t: &Tensor, d: i64| t.narrow(d, 1, 4);
    hi(&hi(w, 2), 3) + lo(&hi(w, 2), 3) + hi(&lo(w, 2), 3) + lo(&lo(w, 2), 3)
}

/// Leaky ReLU with slope 0.2 (`max(0.2·x, x)`, docs/spec/progan_hp.md §1.1): libtorch's `leaky_relu`, one kernel,
/// twice differentiable (WGAN-GP differentiates D's input gradient again). tch exposes it only with the default
/// slope, so it is reached through csrc/ops.cpp.
pub fn lrelu(x: &Tensor) -> Tensor {
    native::leaky_relu(x, LRELU_SLOPE)
}

/// Pixel norm `x / sqrt(mean_c(x²) + 1e-8)` over dim 1, per sample and per pixel (docs/spec/progan_hp.md §1.2). For `[N, nz]` latents
/// it rescales each z to RMS 1. This is the formula step by step (the plain path); the fast path runs
/// [`native::pixel_norm`], one autograd node with a hand-written backward.
pub fn pixel_norm(x: &Tensor) -> Tensor {
    x * (x.square().mean_dim(1, true, None::<Kind>) + EPSILON).rsqrt()
}

/// Nearest-neighbour upscale: each pixel becomes an `f×f` block (TF `upscale2d`).
pub fn upscale(x: &Tensor, factor: i64) -> Tensor {
    if factor == 1 {
        return x.shallow_clone();
    }
    let s = x.size();
    let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
    x.upsample_nearest2d([h * factor, w * factor], None, None)
}

/// Box downscale: `f×f` average pooling with stride `f` (TF `downscale2d`).
pub fn downscale(x: &Tensor, factor: i64) -> Tensor {
    if factor == 1 {
        return x.shallow_clone();
    }
    x.avg_pool2d(
        [factor, factor],
        [factor, factor],
        [0, 0],
        false,
        true,
        None,
    )
}

/// `a + (b − a)·t`, the reference's `tflib.lerp` (docs/spec/progan_hp.md §1.4, §1.5).
pub fn lerp(a: &Tensor, b: &Tensor, t: f64) -> Tensor {
    a + (b - a) * t
}

/// Minibatch standard deviation (docs/spec/progan_hp.md §1.2, §15.3): appends one feature map as the LAST channel.
///
/// The batch `[N, C, H, W]` is cut into `chunks` equal contiguous chunks (the reference's per-GPU minibatches).
/// Within a chunk of `n = N/chunks` samples, `G = min(group_size, n)` and `M = n/G`; sample `b` of the chunk belongs
/// to group `b mod M` (strided groups). Per group: biased variance over its G members, `sqrt(var + 1e-8)`, mean
/// over C, H, W; every member receives its group's scalar. Computed in fp32 (fp64 for fp64 input) and cast back to
/// the input's kind.
///
/// Panics when `N` is not divisible by `chunks` or the chunk size by `G` (callers validate batch sizes up front;
/// see [`super::check_minibatch`]).
pub fn minibatch_stddev(x: &Tensor, group_size: i64, chunks: i64) -> Tensor {
    let (n, c, h, w) = x.size4().expect("minibatch_stddev expects an NCHW tensor");
    if let Err(e) = super::check_minibatch(n, chunks, group_size) {
        panic!("minibatch_stddev: {e}");
    }
    let per = n / chunks;
    let g = group_size.min(per);
    let m = per / g;
    // [chunks, G, M, C, H, W]: within a chunk, sample b = g_idx·M + m_idx, so m_idx = b mod M.
    let work = if x.kind() == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    };
    let y = x.to_kind(work).reshape([chunks, g, m, c, h, w]);
    let centred = &y - y.mean_dim(1, true, None::<Kind>);
    let var = centred.square().mean_dim(1, false, None::<Kind>); // biased, [chunks, M, C, H, W]
    let sd = (var + EPSILON).sqrt();
    let s = sd.mean_dim(&[2i64, 3, 4][..], false, None::<Kind>); // [chunks, M]
    let s = s
        .unsqueeze(1)
        .expand([chunks, g, m], false)
        .reshape([n, 1, 1, 1])
        .expand([n, 1, h, w], false)
        .to_kind(x.kind());
    Tensor::cat(&[x, &s], 1)
}
