//! libtorch operators and tools that tch does not expose (csrc/ops.cpp): leaky ReLU with a chosen slope, the
//! channels-last (NHWC) memory format, and a per-operator CPU profile (`bench --profile`).

use anyhow::{bail, Result};
use std::ffi::{c_char, c_void, CStr};
use tch::Tensor;

/// torch-sys's `CTensor`, opaque here (a `torch::Tensor*` on the C++ side).
type CTensor = c_void;

extern "C" {
    fn hg_last_error() -> *const c_char;
    fn hg_leaky_relu(x: *const CTensor, slope: f64) -> *mut CTensor;
    fn hg_pixel_norm(x: *const CTensor, eps: f64) -> *mut CTensor;
    fn hg_channels_last(x: *const CTensor) -> *mut CTensor;
    fn hg_is_channels_last(x: *const CTensor) -> i32;
    fn hg_profiler_start() -> i32;
    fn hg_profiler_stop() -> *mut c_char;
    fn hg_free_string(s: *mut c_char);
}

fn last_error() -> String {
    // SAFETY: hg_last_error returns a NUL-terminated string owned by csrc/ops.cpp's thread-local error.
    unsafe { CStr::from_ptr(hg_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A tensor returned by csrc/ops.cpp, or the libtorch error as a panic (these operators fail only on programming
/// errors, like tch's own infallible methods).
fn wrap(ptr: *mut CTensor, op: &str) -> Tensor {
    if ptr.is_null() {
        panic!("{op}: {}", last_error());
    }
    // SAFETY: a non-null result is a heap `torch::Tensor*` that we now own, the convention of tch's own wrappers.
    unsafe { Tensor::from_ptr(ptr as *mut _) }
}

/// `max(x, slope·x)`: libtorch's `leaky_relu` with the given slope, one kernel, differentiable twice.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    // SAFETY: `x` is a live tensor for the duration of the call; the result is owned by `wrap`.
    wrap(
        unsafe { hg_leaky_relu(x.as_ptr() as *const CTensor, slope) },
        "leaky_relu",
    )
}

/// Pixel norm over dim 1, `x / sqrt(mean_c(x²) + eps)`, as one autograd node with a hand-written backward
/// (csrc/ops.cpp): fewer passes over the activations than the composite of [`crate::core::networks::pixel_norm`],
/// which is the plain path and the test oracle.
pub fn pixel_norm(x: &Tensor, eps: f64) -> Tensor {
    // SAFETY: as above.
    wrap(
        unsafe { hg_pixel_norm(x.as_ptr() as *const CTensor, eps) },
        "pixel_norm",
    )
}

/// The same values with an NHWC layout (a copy unless they already have it); 4-D tensors only.
pub fn channels_last(x: &Tensor) -> Tensor {
    // SAFETY: as above.
    wrap(
        unsafe { hg_channels_last(x.as_ptr() as *const CTensor) },
        "channels_last",
    )
}

/// Whether `x` is a 4-D tensor laid out NHWC.
pub fn is_channels_last(x: &Tensor) -> bool {
    // SAFETY: reads the tensor's strides only.
    unsafe { hg_is_channels_last(x.as_ptr() as *const CTensor) == 1 }
}

/// One operator's line in a [`profile`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpTime {
    pub name: String,
    pub calls: u64,
    /// Time in the operator itself, without the operators it called, in ms.
    pub self_ms: f64,
    /// Time including the operators it called, in ms.
    pub total_ms: f64,
}

/// Runs `f` under libtorch's CPU profiler and returns its result and the operators' times, largest self time
/// first. Backward operators are included (autograd runs them on the calling thread for CPU tensors); on CUDA the
/// times are the host's launch times, not the kernels'.
pub fn profile<T>(f: impl FnOnce() -> T) -> Result<(T, Vec<OpTime>)> {
    // SAFETY: starts a thread-local profiler state in libtorch.
    if unsafe { hg_profiler_start() } != 0 {
        bail!("cannot start libtorch's profiler: {}", last_error());
    }
    let out = f();
    // SAFETY: stops it; the returned string is malloc'd by csrc/ops.cpp and freed below.
    let raw = unsafe { hg_profiler_stop() };
    if raw.is_null() {
        bail!("libtorch's profiler failed: {}", last_error());
    }
    // SAFETY: a NUL-terminated string from hg_profiler_stop.
    let text = unsafe { CStr::from_ptr(raw) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed once, by the allocator that made it.
    unsafe { hg_free_string(raw) };
    let ops = text
        .lines()
        .filter_map(|line| {
            let mut it = line.split('\t');
            let name = it.next()?.to_string();
            let calls = it.next()?.parse().ok()?;
            let self_us: f64 = it.next()?.parse().ok()?;
            let total_us: f64 = it.next()?.parse().ok()?;
            Some(OpTime {
                name,
                calls,
                self_ms: self_us / 1e3,
                total_ms: total_us / 1e3,
            })
        })
        .collect();
    Ok((out, ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn leaky_relu_has_the_slope_and_a_second_derivative() {
        let x = Tensor::from_slice(&[-2.0f32, -0.5, 0.5, 3.0]).set_requires_grad(true);
        let y = leaky_relu(&x, 0.2);
        assert_eq!(
            Vec::<f32>::try_from(&y).unwrap(),
            vec![-0.4, -0.1, 0.5, 3.0]
        );
        // d/dx of Σ (dy/dx · x²) needs the backward of leaky_relu's backward (WGAN-GP's double backward).
        let g = Tensor::run_backward(&[y.sum(Kind::Float)], &[&x], true, true).remove(0);
        assert_eq!(Vec::<f32>::try_from(&g).unwrap(), vec![0.2, 0.2, 1.0, 1.0]);
        let gg = Tensor::run_backward(&[(&g * &x * &x).sum(Kind::Float)], &[&x], false, false);
        assert_eq!(
            Vec::<f32>::try_from(&gg[0]).unwrap(),
            vec![-0.8, -0.2, 1.0, 6.0]
        );
    }

    #[test]
    fn pixel_norm_and_its_gradient_match_the_composite() {
        let x = Tensor::randn([3, 5, 2, 2], (Kind::Double, Device::Cpu)).set_requires_grad(true);
        let g = Tensor::randn([3, 5, 2, 2], (Kind::Double, Device::Cpu));
        let fused = pixel_norm(&x, 1e-8);
        let composite = &x * (x.square().mean_dim(1, true, None::<Kind>) + 1e-8).rsqrt();
        assert!(fused.allclose(&composite, 1e-12, 1e-12, false));
        let gf = Tensor::run_backward(&[(&fused * &g).sum(Kind::Double)], &[&x], false, false);
        let gc = Tensor::run_backward(&[(&composite * &g).sum(Kind::Double)], &[&x], false, false);
        assert!(gf[0].allclose(&gc[0], 1e-10, 1e-12, false));
        // Every output has RMS 1 over the channels.
        let rms = fused.square().mean_dim(1, false, None::<Kind>).sqrt();
        assert!(rms.allclose(&rms.ones_like(), 1e-6, 1e-6, false));
    }

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        assert!(!is_channels_last(&x));
        let y = channels_last(&x);
        assert!(is_channels_last(&y));
        assert_eq!(y.stride(), vec![60, 1, 15, 3]);
        assert_eq!(y.size(), x.size());
        assert!(y.equal(&x));
        assert!(!is_channels_last(&Tensor::zeros(
            [3, 4],
            (Kind::Float, Device::Cpu)
        )));
    }

    #[test]
    fn the_profile_counts_what_ran() {
        let a = Tensor::ones([64, 64], (Kind::Float, Device::Cpu));
        let (_, ops) = profile(|| {
            for _ in 0..3 {
                let _ = a.matmul(&a);
            }
        })
        .unwrap();
        let mm = ops
            .iter()
            .find(|o| o.name == "aten::matmul")
            .expect("matmul is profiled");
        assert_eq!(mm.calls, 3);
        assert!(mm.total_ms >= mm.self_ms && mm.self_ms >= 0.0);
    }
}
