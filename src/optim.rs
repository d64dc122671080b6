//! Adam and the Gs moving average on flat parameter buffers.
//!
//! Every parameter of a network is made a view into one contiguous buffer, so an optimiser step, the non-finite
//! check and the EMA update are a handful of whole-buffer kernels instead of a loop of small ops per parameter, and
//! nothing reads a value back to the host (spec progan_hp §2.3, §2.4; issue 8's hot-path rules).
//!
//! The update is TF's Adam as the reference used it: `lr_t = lr·sqrt(1−β2^t)/(1−β1^t)`,
//! `θ ← θ − lr_t·m/(sqrt(v)+ε)`. An update whose gradient holds any non-finite value is skipped whole (moments,
//! step count and parameters unchanged), as `optimizer.py:apply_updates` does; the skip is counted on the device.

use anyhow::{ensure, Result};
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The trainable parameters of one network as views into one flat float buffer, in name order.
pub struct FlatParams {
    pub names: Vec<String>,
    pub params: Vec<Tensor>,
    pub flat: Tensor,
    /// (offset, numel) of each parameter in `flat`.
    pub spans: Vec<(i64, i64)>,
}

impl FlatParams {
    /// Moves every variable of `vs` into one buffer (values unchanged) and re-points the variables at views of it.
    pub fn new(vs: &VarStore) -> Self {
        let _guard = tch::no_grad_guard();
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let total: i64 = vars.iter().map(|(_, t)| t.numel() as i64).sum();
        let flat = Tensor::zeros([total], (Kind::Float, vs.device()));
        let mut spans = Vec::with_capacity(vars.len());
        let mut off = 0;
        let (mut names, mut params) = (Vec::new(), Vec::new());
        for (name, mut var) in vars {
            let n = var.numel() as i64;
            let view = flat.narrow(0, off, n).view(var.size().as_slice());
            view.copy_(&var);
            var.set_data(&view);
            spans.push((off, n));
            off += n;
            names.push(name);
            params.push(var);
        }
        Self { names, params, flat, spans }
    }

    pub fn numel(&self) -> i64 {
        self.flat.size()[0]
    }

    /// Gradients (as returned by `Tensor::run_backward` for `self.params`, undefined = not used) as one flat buffer.
    pub fn flatten_grads(&self, grads: &[Tensor]) -> Tensor {
        let parts: Vec<Tensor> = grads
            .iter()
            .zip(&self.params)
            .map(|(g, p)| if g.defined() { g.reshape([-1]) } else { Tensor::zeros([p.numel() as i64], (Kind::Float, p.device())) })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// Copies values from another buffer of the same layout (e.g. G into Gs).
    pub fn copy_from(&self, other: &FlatParams) -> Result<()> {
        ensure!(self.names == other.names, "parameter layouts differ; cannot copy between these networks");
        let _guard = tch::no_grad_guard();
        self.flat.copy_(&other.flat);
        Ok(())
    }

    /// `self ← src + β·(self − src)`, the Gs update (§2.4), as one kernel.
    pub fn ema_from(&self, src: &FlatParams, beta: f64) {
        let _guard = tch::no_grad_guard();
        let mut flat = self.flat.shallow_clone();
        let _ = flat.lerp_(&src.flat, 1.0 - beta);
    }

    /// Per-parameter views of a buffer laid out like `flat` (for saving moments by name).
    pub fn views<'a>(&'a self, buffer: &'a Tensor) -> impl Iterator<Item = (&'a str, Tensor)> + 'a {
        self.names.iter().zip(&self.spans).zip(&self.params).map(move |((name, &(off, n)), p)| {
            (name.as_str(), buffer.narrow(0, off, n).view(p.size().as_slice()))
        })
    }
}

/// Adam with TF's update rule, on flat buffers, with device-side skip of non-finite updates.
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// First and second moments, laid out like the parameters' flat buffer.
    pub m: Tensor,
    pub v: Tensor,
    /// Number of applied updates (a float scalar on the device, so skipping needs no host read).
    pub step: Tensor,
    /// Skipped updates in total, the current run of consecutive skips, and the longest run (device scalars).
    pub skipped: Tensor,
    pub consecutive_skips: Tensor,
}

impl Adam {
    /// The reference's settings: β1 0, β2 0.99, ε 1e-8 (§2.1).
    pub fn new(params: &FlatParams, lr: f64) -> Self {
        let n = params.numel();
        let dev = params.flat.device();
        Self {
            lr,
            beta1: 0.0,
            beta2: 0.99,
            eps: 1e-8,
            m: Tensor::zeros([n], (Kind::Float, dev)),
            v: Tensor::zeros([n], (Kind::Float, dev)),
            step: Tensor::zeros([], (Kind::Float, dev)),
            skipped: Tensor::zeros([], (Kind::Float, dev)),
            consecutive_skips: Tensor::zeros([], (Kind::Float, dev)),
        }
    }

    /// Forgets the moments and the step count (the reference resets Adam whenever floor/ceil of the lod changes).
    pub fn reset(&mut self) {
        let _guard = tch::no_grad_guard();
        let _ = self.m.zero_();
        let _ = self.v.zero_();
        let _ = self.step.zero_();
    }

    /// One update of `params` from the flat gradient `grad`. Skipped (and counted) when `grad` is not all finite.
    pub fn step(&mut self, params: &FlatParams, grad: &Tensor) {
        let _guard = tch::no_grad_guard();
        let ok = grad.isfinite().all().to_kind(Kind::Float); // 1 applies the update, 0 skips it
        let g = grad.nan_to_num(0.0, 0.0, 0.0) * &ok;
        let _ = self.step.g_add_(&ok);
        // m ← β1·m + (1−β1)·g when ok, unchanged otherwise (g is zero then and the decay factor is 1).
        let keep1 = 1.0 - &ok * (1.0 - self.beta1);
        let keep2 = 1.0 - &ok * (1.0 - self.beta2);
        let _ = self.m.g_mul_(&keep1).g_add_(&(&g * (1.0 - self.beta1)));
        let _ = self.v.g_mul_(&keep2).g_add_(&(g.square() * (1.0 - self.beta2)));
        let t = self.step.clamp_min(1.0);
        // β^t as exp(t·ln β), computed on the device (ln 0 = −∞ gives β1^t = 0 for β1 = 0, t ≥ 1).
        let pow = |beta: f64| (&t * beta.ln()).exp();
        let lr_t = (1.0 - pow(self.beta2)).sqrt() / (1.0 - pow(self.beta1)) * (self.lr * &ok);
        let update = &self.m / (self.v.sqrt() + self.eps) * lr_t;
        let mut flat = params.flat.shallow_clone();
        let _ = flat.g_sub_(&update);
        let skip = 1.0 - &ok;
        let _ = self.skipped.g_add_(&skip);
        let _ = self.consecutive_skips.g_add_(&skip).g_mul_(&skip);
    }

    /// Moves the state to `device` (after loading a snapshot).
    pub fn to_device(&mut self, device: Device) {
        for t in [&mut self.m, &mut self.v, &mut self.step, &mut self.skipped, &mut self.consecutive_skips] {
            *t = t.to_device(device);
        }
    }
}
