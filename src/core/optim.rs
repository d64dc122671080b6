//! Adam and the Gs moving average on flat parameter buffers.
//!
//! Every parameter of a network is made a view into one contiguous buffer, so an optimiser step, the non-finite
//! check and the EMA update are a handful of whole-buffer kernels instead of a loop of small ops per parameter, and
//! nothing reads a value back to the host (docs/spec/progan_hp.md §2.3, §2.4; issue 8's hot-path rules).
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
    /// Moves every trainable variable of `vs` into one buffer (values unchanged) and re-points the variables at views
    /// of it. Non-trainable variables (batch-norm running averages, spectral-norm vectors) stay where they are.
    pub fn new(vs: &VarStore) -> Self {
        let _guard = tch::no_grad_guard();
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let total: i64 = vars.iter().map(|(_, t)| t.numel() as i64).sum();
        let flat = Tensor::zeros([total], (Kind::Float, vs.device()));
        let mut spans = Vec::with_capacity(vars.len());
        let mut off = 0;
        let (mut names, mut params) = (Vec::new(), Vec::new());
        for (name, mut var) in vars {
            let n = var.numel() as i64;
            let mut view = flat.narrow(0, off, n).view(var.size().as_slice());
            view.copy_(&var);
            var.set_data(&view);
            spans.push((off, n));
            off += n;
            names.push(name);
            params.push(var);
        }
        Self {
            names,
            params,
            flat,
            spans,
        }
    }

    pub fn numel(&self) -> i64 {
        self.flat.size()[0]
    }

    /// Gradients (as returned by `Tensor::run_backward` for `self.params`, undefined = not used) as one flat buffer.
    pub fn flatten_grads(&self, grads: &[Tensor]) -> Tensor {
        let parts: Vec<Tensor> = grads
            .iter()
            .zip(&self.params)
            .map(|(g, p)| {
                if g.defined() {
                    g.reshape([-1])
                } else {
                    Tensor::zeros([p.numel() as i64], (Kind::Float, p.device()))
                }
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// Copies values from another buffer of the same layout (e.g. G into Gs).
    pub fn copy_from(&self, other: &FlatParams) -> Result<()> {
        ensure!(
            self.names == other.names,
            "parameter layouts differ; cannot copy between these networks"
        );
        let _guard = tch::no_grad_guard();
        self.flat.shallow_clone().copy_(&other.flat);
        Ok(())
    }

    /// `self ← src + β·(self − src)`, the Gs update (docs/spec/progan_hp.md §2.4), as one kernel.
    pub fn ema_from(&self, src: &FlatParams, beta: f64) {
        let _guard = tch::no_grad_guard();
        let mut flat = self.flat.shallow_clone();
        let _ = flat.lerp_(&src.flat, 1.0 - beta);
    }

    /// Per-parameter views of a buffer laid out like `flat` (for saving moments by name).
    pub fn views<'a>(&'a self, buffer: &'a Tensor) -> impl Iterator<Item = (&'a str, Tensor)> + 'a {
        self.names
            .iter()
            .zip(&self.spans)
            .zip(&self.params)
            .map(move |((name, &(off, n)), p)| {
                (
                    name.as_str(),
                    buffer.narrow(0, off, n).view(p.size().as_slice()),
                )
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
    /// The reference's settings: β1 0, β2 0.99, ε 1e-8 (docs/spec/progan_hp.md §2.1).
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
        let keep1 = -(&ok * (1.0 - self.beta1)) + 1.0;
        let keep2 = -(&ok * (1.0 - self.beta2)) + 1.0;
        let _ = self.m.g_mul_(&keep1).g_add_(&(&g * (1.0 - self.beta1)));
        let _ = self
            .v
            .g_mul_(&keep2)
            .g_add_(&(g.square() * (1.0 - self.beta2)));
        let t = self.step.clamp_min(1.0);
        // β^t as exp(t·ln β), computed on the device (ln 0 = −∞ gives β1^t = 0 for β1 = 0, t ≥ 1).
        let pow = |beta: f64| -> Tensor { (&t * beta.ln()).exp() };
        let bias2 = (-pow(self.beta2) + 1.0).sqrt();
        let bias1 = -pow(self.beta1) + 1.0;
        let lr_t = bias2 / bias1 * (&ok * self.lr);
        let update = &self.m / (self.v.sqrt() + self.eps) * lr_t;
        let mut flat = params.flat.shallow_clone();
        let _ = flat.g_sub_(&update);
        let skip = -&ok + 1.0;
        let _ = self.skipped.g_add_(&skip);
        let _ = self.consecutive_skips.g_add_(&skip).g_mul_(&skip);
    }

    /// Moves the state to `device` (after loading a snapshot).
    pub fn to_device(&mut self, device: Device) {
        for t in [
            &mut self.m,
            &mut self.v,
            &mut self.step,
            &mut self.skipped,
            &mut self.consecutive_skips,
        ] {
            *t = t.to_device(device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    fn store() -> (VarStore, FlatParams) {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let _a = root.var_copy("a", &Tensor::from_slice(&[1.0f32, -2.0]));
        let _b = root.var_copy(
            "b",
            &Tensor::from_slice(&[0.5f32, 0.25, 3.0, -1.0]).reshape([2, 2]),
        );
        let flat = FlatParams::new(&vs);
        (vs, flat)
    }

    #[test]
    fn variables_become_views_of_the_flat_buffer() {
        let (vs, p) = store();
        assert_eq!(p.names, vec!["a", "b"]);
        assert_eq!(p.numel(), 6);
        let _ = p.flat.shallow_clone().fill_(7.0);
        let vars = vs.variables();
        assert_eq!(
            vars["b"].double_value(&[1, 0]),
            7.0,
            "writing the buffer updates the variable"
        );
        assert!(vars["a"].requires_grad());
        let _ = nn::Init::Const(0.0);
    }

    #[test]
    fn adam_matches_tf_update_rule_and_skips_non_finite() {
        let (_vs, p) = store();
        let mut opt = Adam::new(&p, 0.1);
        opt.beta1 = 0.9;
        let theta0: Vec<f32> = Vec::try_from(&p.flat).unwrap();
        let grads = [
            [0.5f32, -1.0, 2.0, 0.0, 1.0, -0.25],
            [1.0f32, 1.0, -1.0, 0.5, 0.0, 2.0],
        ];
        // Reference computation in f64.
        let (mut m, mut v, mut th) = (
            vec![0f64; 6],
            vec![0f64; 6],
            theta0.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        );
        for (t, g) in grads.iter().enumerate() {
            let t = (t + 1) as f64;
            let lr_t = 0.1 * (1.0 - 0.99f64.powf(t)).sqrt() / (1.0 - 0.9f64.powf(t));
            for i in 0..6 {
                m[i] = 0.9 * m[i] + 0.1 * g[i] as f64;
                v[i] = 0.99 * v[i] + 0.01 * (g[i] as f64).powi(2);
                th[i] -= lr_t * m[i] / (v[i].sqrt() + 1e-8);
            }
            opt.step(&p, &Tensor::from_slice(g));
            // A NaN gradient in between changes nothing.
            opt.step(
                &p,
                &Tensor::from_slice(&[f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0]),
            );
        }
        let got: Vec<f32> = Vec::try_from(&p.flat).unwrap();
        for i in 0..6 {
            assert!(
                (got[i] as f64 - th[i]).abs() < 1e-5,
                "param {i}: {} vs {}",
                got[i],
                th[i]
            );
        }
        assert_eq!(opt.step.double_value(&[]), 2.0);
        assert_eq!(opt.skipped.double_value(&[]), 2.0);
        assert_eq!(opt.consecutive_skips.double_value(&[]), 1.0);
        opt.step(
            &p,
            &Tensor::from_slice(&[f32::INFINITY, 0.0, 0.0, 0.0, 0.0, 0.0]),
        );
        assert_eq!(opt.consecutive_skips.double_value(&[]), 2.0);
        opt.step(&p, &Tensor::zeros([6], (Kind::Float, Device::Cpu)));
        assert_eq!(
            opt.consecutive_skips.double_value(&[]),
            0.0,
            "a good update ends the run of skips"
        );
        opt.reset();
        assert_eq!(opt.step.double_value(&[]), 0.0);
        assert_eq!(opt.m.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn ema_moves_toward_the_source() {
        let (_vs, g) = store();
        let (_vs2, gs) = store();
        let _ = gs.flat.shallow_clone().fill_(0.0);
        gs.ema_from(&g, 0.75);
        // gs ← g + β(gs − g) = 0.25·g when gs = 0.
        let want = &g.flat * 0.25;
        assert!(gs.flat.allclose(&want, 1e-6, 1e-7, false));
    }
}
