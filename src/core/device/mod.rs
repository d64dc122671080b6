//! The compute device: `--device auto|cpu|cuda|cuda:N` parsed and resolved to a `tch::Device` with one-line errors,
//! and the device facts the run logs and benchmarks report (name, memory); `cuda` asks the driver directly.

use anyhow::{bail, Result};
use std::fmt;
use std::str::FromStr;
use tch::Device;

pub mod cuda;

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

/// "NVIDIA H100 80GB HBM3, 79.1 GiB" for a CUDA device, "N CPU threads" for the CPU: for run logs.
pub fn short_description(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(i) => cuda::query()
            .and_then(|(_, gpus)| gpus.into_iter().find(|g| g.index == i))
            .map_or_else(
                || "CUDA".to_string(),
                |g| {
                    format!(
                        "{}, {:.1} GiB",
                        g.name,
                        g.total_memory_bytes as f64 / (1u64 << 30) as f64
                    )
                },
            ),
        _ => format!("{} CPU threads", tch::get_num_threads()),
    }
}

/// Peak memory in GB for the run log: the process's peak resident set on the CPU (from /proc); on CUDA the device's
/// memory in use as the driver reports it (libtorch's allocator statistics are not exposed through tch).
pub fn peak_memory_gb(device: tch::Device) -> Option<f64> {
    match device {
        tch::Device::Cuda(i) => cuda::memory_in_use(i).map(|b| b as f64 / 1e9),
        _ => {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024.0 / 1e9)
        }
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
