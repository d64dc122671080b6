//! `--device auto|cpu|cuda|cuda:N`: parsing and resolution to a `tch::Device`, with one-line errors.

use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;
use tch::Device;

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA device 0 when libtorch sees a GPU, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// `cuda` (device 0) or `cuda:N`.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(format!(
                    "'{s}' is not a device; use auto, cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Resolves against what libtorch sees; asking for a GPU that is not there is an error, not a fallback.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda(n) => {
                if !tch::Cuda::is_available() {
                    bail!(
                        "--device {self}: CUDA is not available on this machine (libtorch sees no GPU); \
                         use --device cpu or --device auto"
                    );
                }
                let count = tch::Cuda::device_count() as usize;
                if n >= count {
                    bail!(
                        "--device {self}: only {count} CUDA device(s) present (cuda:0..cuda:{})",
                        count - 1
                    );
                }
                Ok(Device::Cuda(n))
            }
        }
    }
}

/// A short human name for a resolved device, e.g. `cpu` or `cuda:0`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Cpu => "cpu".to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("auto".parse::<DeviceSpec>(), Ok(DeviceSpec::Auto));
        assert_eq!("CPU".parse::<DeviceSpec>(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceSpec>(), Ok(DeviceSpec::Cuda(3)));
        assert!("cuda:x"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("cuda:x"));
        assert!("tpu".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn cuda_without_gpu_is_a_clear_error() {
        if tch::Cuda::is_available() {
            return;
        }
        let err = DeviceSpec::Cuda(0).resolve().unwrap_err().to_string();
        assert!(
            err.contains("--device cuda:0") && err.contains("not available"),
            "{err}"
        );
        assert_eq!(DeviceSpec::Auto.resolve().unwrap(), Device::Cpu);
    }
}
