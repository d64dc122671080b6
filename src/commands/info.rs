//! `hessian-gan info`: what this build links against and what hardware it can use.

use crate::core::device::cuda::{self, GpuInfo};
use crate::core::device::{device_name, DeviceSpec};
use anyhow::Result;
use serde::Serialize;

/// Everything `info` reports, also as JSON (`info --json`).
#[derive(Debug, Serialize)]
pub struct Info {
    pub crate_version: String,
    pub libtorch_version: String,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub cuda_driver_version: Option<String>,
    pub gpus: Vec<GpuInfo>,
    pub cpu_threads: i32,
    pub mkl: bool,
    pub openmp: bool,
    pub selected_device: String,
}

pub fn collect(spec: DeviceSpec) -> Result<Info> {
    let device = spec.resolve()?;
    let cuda_available = tch::Cuda::is_available();
    let cudnn_available = cuda_available && tch::Cuda::cudnn_is_available();
    let (driver, gpus) = if cuda_available {
        cuda::query().unzip()
    } else {
        (None, None)
    };
    Ok(Info {
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        libtorch_version: env!("HG_LIBTORCH_VERSION").to_string(),
        cuda_available,
        cuda_device_count: if cuda_available {
            tch::Cuda::device_count()
        } else {
            0
        },
        cudnn_available,
        cudnn_version: cudnn_available.then(tch::utils::version_cudnn),
        cuda_driver_version: driver.map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)),
        gpus: gpus.unwrap_or_default(),
        cpu_threads: tch::get_num_threads(),
        mkl: tch::utils::has_mkl(),
        openmp: tch::utils::has_openmp(),
        selected_device: device_name(device),
    })
}

impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "hessian-gan      {}", self.crate_version)?;
        writeln!(f, "libtorch         {}", self.libtorch_version)?;
        writeln!(
            f,
            "CUDA available   {} ({} device(s))",
            yes(self.cuda_available),
            self.cuda_device_count
        )?;
        if let Some(v) = &self.cuda_driver_version {
            writeln!(f, "CUDA driver      {v}")?;
        }
        match self.cudnn_version {
            Some(v) => writeln!(f, "cuDNN available  yes (version {v})")?,
            None => writeln!(f, "cuDNN available  {}", yes(self.cudnn_available))?,
        }
        for g in &self.gpus {
            writeln!(
                f,
                "  cuda:{}  {}  {:.1} GiB  sm_{}{}",
                g.index,
                g.name,
                g.total_memory_bytes as f64 / (1u64 << 30) as f64,
                g.compute_capability.0,
                g.compute_capability.1
            )?;
        }
        writeln!(
            f,
            "CPU threads      {} (MKL {}, OpenMP {})",
            self.cpu_threads,
            yes(self.mkl),
            yes(self.openmp)
        )?;
        write!(f, "selected device  {}", self.selected_device)
    }
}
