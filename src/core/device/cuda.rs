//! GPU names and memory through the CUDA driver API (libcuda.so.1, loaded at run time).
//!
//! tch exposes whether CUDA is available and how many devices there are, but not their names or memory. The driver
//! API's functions used here are stable C symbols, so they are loaded with libloading; on a machine without the
//! driver this module simply reports nothing.

use libloading::{Library, Symbol};
use std::os::raw::{c_char, c_int, c_uint};

/// One CUDA device as the driver describes it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuInfo {
    pub index: usize,
    pub name: String,
    pub total_memory_bytes: u64,
    pub compute_capability: (i32, i32),
}

/// Driver version (e.g. 13000 for CUDA 13.0) and the devices, or None when no driver is loadable.
pub fn query() -> Option<(i32, Vec<GpuInfo>)> {
    // SAFETY: the symbols are the CUDA driver API's documented C functions with these exact signatures; every output
    // pointer refers to a live local of the right type and size.
    unsafe {
        let lib = Library::new("libcuda.so.1").ok()?;
        let cu_init: Symbol<unsafe extern "C" fn(c_uint) -> c_int> = lib.get(b"cuInit").ok()?;
        let get_count: Symbol<unsafe extern "C" fn(*mut c_int) -> c_int> =
            lib.get(b"cuDeviceGetCount").ok()?;
        let get_device: Symbol<unsafe extern "C" fn(*mut c_int, c_int) -> c_int> =
            lib.get(b"cuDeviceGet").ok()?;
        let get_name: Symbol<unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int> =
            lib.get(b"cuDeviceGetName").ok()?;
        let total_mem: Symbol<unsafe extern "C" fn(*mut usize, c_int) -> c_int> =
            lib.get(b"cuDeviceTotalMem_v2").ok()?;
        let get_attr: Symbol<unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int> =
            lib.get(b"cuDeviceGetAttribute").ok()?;
        let driver_version: Symbol<unsafe extern "C" fn(*mut c_int) -> c_int> =
            lib.get(b"cuDriverGetVersion").ok()?;
        if cu_init(0) != 0 {
            return None;
        }
        let mut version = 0;
        driver_version(&mut version);
        let mut count = 0;
        if get_count(&mut count) != 0 {
            return None;
        }
        let mut gpus = Vec::new();
        for index in 0..count {
            let mut dev = 0;
            if get_device(&mut dev, index) != 0 {
                continue;
            }
            let mut buf = [0 as c_char; 256];
            get_name(buf.as_mut_ptr(), buf.len() as c_int, dev);
            let name = std::ffi::CStr::from_ptr(buf.as_ptr())
                .to_string_lossy()
                .into_owned();
            let mut bytes = 0usize;
            total_mem(&mut bytes, dev);
            // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76.
            let (mut major, mut minor) = (0, 0);
            get_attr(&mut major, 75, dev);
            get_attr(&mut minor, 76, dev);
            gpus.push(GpuInfo {
                index: index as usize,
                name,
                total_memory_bytes: bytes as u64,
                compute_capability: (major, minor),
            });
        }
        Some((version, gpus))
    }
}

/// Bytes in use on CUDA device `index` (total − free, from `cudaMemGetInfo` through libcudart), or None.
pub fn memory_in_use(index: usize) -> Option<u64> {
    // SAFETY: documented CUDA runtime API signatures; outputs are live locals. libtorch has already loaded the
    // runtime and created the context for this device.
    unsafe {
        let lib = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"]
            .iter()
            .find_map(|n| Library::new(n).ok())?;
        let set_device: Symbol<unsafe extern "C" fn(c_int) -> c_int> =
            lib.get(b"cudaSetDevice").ok()?;
        let mem_info: Symbol<unsafe extern "C" fn(*mut usize, *mut usize) -> c_int> =
            lib.get(b"cudaMemGetInfo").ok()?;
        if set_device(index as c_int) != 0 {
            return None;
        }
        let (mut free, mut total) = (0usize, 0usize);
        if mem_info(&mut free, &mut total) != 0 {
            return None;
        }
        Some((total - free) as u64)
    }
}
