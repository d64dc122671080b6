//! Reduced-precision modes of training (issue 8): `--precision fp32|tf32|bf16`.
//!
//! The Hessian Penalty divides second differences by ε² = 0.01 (docs/spec/progan_hp.md §3.3), so the rounding of TF32 (10-bit
//! mantissa) or bfloat16 (7-bit) in the perturbed passes is amplified a hundredfold and can swamp the estimate:
//! `bench` measures it (`hp_error_vs_fp32`). Reduced precision is therefore applied only to the adversarial passes
//! (G's images for D, D's scores, the gradient penalty) and their backward; the HP passes, forward and backward, always
//! run in float32 with TF32 off.

use tch::Device;

extern "C" {
    fn hg_set_tf32(on: i32);
    fn hg_tf32() -> i32;
    fn hg_autocast_enter_bf16(cuda: i32) -> i32;
    fn hg_autocast_exit(cuda: i32, prev: i32);
}

/// The arithmetic of the adversarial passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE float32 everywhere (the reference's arithmetic).
    #[default]
    Fp32,
    /// TensorFloat-32 tensor-core math for matmuls and convolutions on CUDA (Ampere and newer); no effect on CPU.
    Tf32,
    /// bfloat16 autocast (convolutions and matmuls in bf16, reductions in float32) on CUDA and CPU.
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this mode changes any arithmetic on `device` (TF32 exists only on CUDA).
    pub fn is_reduced_on(self, device: Device) -> bool {
        match self {
            Precision::Fp32 => false,
            Precision::Tf32 => device.is_cuda(),
            Precision::Bf16 => true,
        }
    }

    /// Runs `f` (forward passes and their backward) in this precision on `device`; float32 with TF32 off is
    /// restored afterwards, also when `f` panics.
    pub fn run<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        let _guard = Region::enter(self, device);
        f()
    }
}

/// Strict float32 (TF32 off, autocast off) for the code around the regions: called once at start-up, since libtorch
/// enables neither by default but a library caller might have.
pub fn set_strict_fp32() {
    // SAFETY: plain setters of libtorch's global context (csrc/precision.cpp).
    unsafe { hg_set_tf32(0) }
}

/// Whether TF32 is currently allowed (for tests and `info`).
pub fn tf32_enabled() -> bool {
    // SAFETY: a getter of libtorch's global context.
    unsafe { hg_tf32() != 0 }
}

/// The state a region changed, restored on drop.
struct Region {
    tf32: bool,
    autocast: Option<(i32, i32)>,
}

impl Region {
    fn enter(p: Precision, device: Device) -> Region {
        let mut r = Region {
            tf32: false,
            autocast: None,
        };
        match p {
            Precision::Fp32 => {}
            Precision::Tf32 => {
                if device.is_cuda() {
                    // SAFETY: global-context setter; restored in drop.
                    unsafe { hg_set_tf32(1) };
                    r.tf32 = true;
                }
            }
            Precision::Bf16 => {
                let cuda = i32::from(device.is_cuda());
                // SAFETY: enters libtorch's autocast state for this thread's device type; exited in drop.
                let prev = unsafe { hg_autocast_enter_bf16(cuda) };
                r.autocast = Some((cuda, prev));
            }
        }
        r
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.tf32 {
            // SAFETY: see enter.
            unsafe { hg_set_tf32(0) };
        }
        if let Some((cuda, prev)) = self.autocast {
            // SAFETY: pairs with hg_autocast_enter_bf16 above.
            unsafe { hg_autocast_exit(cuda, prev) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn bf16_region_runs_matmuls_in_bf16_and_restores_float32() {
        let a = Tensor::randn([8, 8], (Kind::Float, Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        let inside = Precision::Bf16.run(Device::Cpu, || a.matmul(&a));
        assert_eq!(inside.kind(), Kind::BFloat16);
        // Element-wise ops keep float32 inside too, and matmuls are float32 again afterwards.
        assert_eq!(
            Precision::Bf16.run(Device::Cpu, || (&a + 1.0).kind()),
            Kind::Float
        );
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        // Nested regions restore the outer one.
        Precision::Bf16.run(Device::Cpu, || {
            Precision::Bf16.run(Device::Cpu, || ());
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        });
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
    }

    #[test]
    fn tf32_is_cuda_only_and_fp32_changes_nothing() {
        set_strict_fp32();
        assert!(!tf32_enabled());
        Precision::Tf32.run(Device::Cpu, || assert!(!tf32_enabled()));
        assert!(!Precision::Tf32.is_reduced_on(Device::Cpu));
        assert!(Precision::Tf32.is_reduced_on(Device::Cuda(0)));
        assert!(Precision::Bf16.is_reduced_on(Device::Cpu));
        let a = Tensor::randn([4, 4], (Kind::Float, Device::Cpu));
        assert_eq!(
            Precision::Fp32.run(Device::Cpu, || a.matmul(&a)).kind(),
            Kind::Float
        );
    }
}
