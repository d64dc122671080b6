//! Data parallelism through torch.distributed's own C++ layer (csrc/distributed.cpp, issue 21): a TCPStore for the
//! rendezvous and small control messages, a Gloo (CPU) or NCCL (CUDA) process group for the collectives, and the
//! `Shard` arithmetic that splits one global minibatch between the ranks.
//!
//! The ranks find each other by the torchrun convention: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and
//! `MASTER_PORT` in the environment ([`WorldInfo::from_env`]), set by `train --nproc N` for its own workers or by
//! an external launcher (torchrun, srun, mpirun wrappers) for multi-node runs.

use anyhow::{bail, ensure, Context, Result};
use std::ffi::{c_char, c_long, c_void, CStr, CString};
use std::time::Duration;
use tch::{Device, Tensor};

type CTensor = c_void;

extern "C" {
    fn hg_dist_last_error() -> *const c_char;
    fn hg_dist_store_new(
        host: *const c_char,
        port: i32,
        world: i32,
        is_server: i32,
        timeout_ms: c_long,
        wait_workers: i32,
    ) -> *mut c_void;
    fn hg_dist_store_free(store: *mut c_void);
    fn hg_dist_store_set(
        store: *mut c_void,
        key: *const c_char,
        value: *const c_char,
        len: usize,
    ) -> i32;
    fn hg_dist_store_get(
        store: *mut c_void,
        key: *const c_char,
        value: *mut *mut c_char,
        len: *mut usize,
    ) -> i32;
    fn hg_dist_store_add(
        store: *mut c_void,
        key: *const c_char,
        delta: c_long,
        out: *mut c_long,
    ) -> i32;
    fn hg_dist_free(p: *mut c_char);
    fn hg_dist_group_new(
        store: *mut c_void,
        rank: i32,
        world: i32,
        backend: i32,
        timeout_ms: c_long,
        interfaces: *const c_char,
    ) -> *mut c_void;
    fn hg_dist_group_free(group: *mut c_void);
    fn hg_dist_all_reduce_sum(group: *mut c_void, t: *const CTensor) -> i32;
    fn hg_dist_broadcast(group: *mut c_void, t: *const CTensor, root: i32) -> i32;
    fn hg_dist_barrier(group: *mut c_void) -> i32;
    fn hg_dist_set_cuda_device(index: i32) -> i32;
}

/// Makes `cuda:index` the process's current CUDA device (torch.cuda.set_device), as each rank does first.
pub fn set_cuda_device(index: usize) -> Result<()> {
    // SAFETY: a plain integer; errors come back as a message.
    check(
        unsafe { hg_dist_set_cuda_device(index as i32) },
        &format!("cannot make cuda:{index} the current device"),
    )
}

fn last_error() -> String {
    // SAFETY: a NUL-terminated string owned by csrc/distributed.cpp's thread-local error.
    unsafe { CStr::from_ptr(hg_dist_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn check(rc: i32, what: &str) -> Result<()> {
    if rc != 0 {
        bail!("{what}: {}", last_error());
    }
    Ok(())
}

fn c_string(s: &str, what: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{what} {s:?} holds a NUL byte"))
}

/// Where this process stands in a job: the torchrun environment variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldInfo {
    pub rank: usize,
    pub world: usize,
    /// The rank within this node, which picks the CUDA device.
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl WorldInfo {
    /// The job this process belongs to, from `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (default: RANK),
    /// `MASTER_ADDR` (default 127.0.0.1) and `MASTER_PORT`; `None` without `WORLD_SIZE` (a single-process run).
    pub fn from_env() -> Result<Option<WorldInfo>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`WorldInfo::from_env`] over any variable lookup (for tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<WorldInfo>> {
        let Some(world) = var("WORLD_SIZE") else {
            return Ok(None);
        };
        let num = |name: &str, value: &str| -> Result<usize> {
            value.trim().parse::<usize>().map_err(|_| {
                anyhow::anyhow!("environment variable {name}={value:?} is not a whole number")
            })
        };
        let world = num("WORLD_SIZE", &world)?;
        let rank_text = var("RANK").context(
            "WORLD_SIZE is set but RANK is not: a distributed launcher sets both (RANK=0..WORLD_SIZE-1)",
        )?;
        let rank = num("RANK", &rank_text)?;
        let local_rank = match var("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", &v)?,
            None => rank,
        };
        let master_addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port_text = var("MASTER_PORT").context(
            "WORLD_SIZE is set but MASTER_PORT is not: set it to a free TCP port on MASTER_ADDR",
        )?;
        let master_port = port_text.trim().parse::<u16>().map_err(|_| {
            anyhow::anyhow!("environment variable MASTER_PORT={port_text:?} is not a TCP port")
        })?;
        ensure!(world >= 1, "WORLD_SIZE=0: a job has at least one rank");
        ensure!(
            rank < world,
            "RANK={rank} is not below WORLD_SIZE={world}: ranks are 0..WORLD_SIZE-1"
        );
        Ok(Some(WorldInfo {
            rank,
            world,
            local_rank,
            master_addr,
            master_port,
        }))
    }

    pub fn is_writer(&self) -> bool {
        self.rank == 0
    }
}

/// c10d's TCPStore: a key-value server on rank 0 that every rank reaches at MASTER_ADDR:MASTER_PORT.
pub struct Store {
    raw: *mut c_void,
}

// SAFETY: c10d::TCPStore is thread-safe (its client serialises requests); the handle is only freed in Drop.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// Rank 0 starts the server (and waits until all `world` ranks have connected); the others connect to it.
    /// `timeout` bounds the connection and every blocking `get`.
    pub fn connect(info: &WorldInfo, timeout: Duration) -> Result<Store> {
        let host = c_string(&info.master_addr, "MASTER_ADDR")?;
        // SAFETY: valid C strings and plain integers; the result is owned here (or null on error).
        let raw = unsafe {
            hg_dist_store_new(
                host.as_ptr(),
                info.master_port as i32,
                info.world as i32,
                info.is_writer() as i32,
                timeout.as_millis() as c_long,
                1,
            )
        };
        if raw.is_null() {
            bail!(
                "rank {}: cannot reach the rendezvous at {}:{} (MASTER_ADDR:MASTER_PORT): {}",
                info.rank,
                info.master_addr,
                info.master_port,
                last_error()
            );
        }
        Ok(Store { raw })
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let k = c_string(key, "store key")?;
        // SAFETY: live handle, valid key, value pointer and length from a slice.
        check(
            unsafe { hg_dist_store_set(self.raw, k.as_ptr(), value.as_ptr() as _, value.len()) },
            &format!("store set {key}"),
        )
    }

    /// Waits for `key` to be set (up to the store's timeout) and returns its value.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let k = c_string(key, "store key")?;
        let (mut p, mut n) = (std::ptr::null_mut(), 0usize);
        // SAFETY: live handle; on success `p` is a malloc'd buffer of `n` bytes that we free below.
        check(
            unsafe { hg_dist_store_get(self.raw, k.as_ptr(), &mut p, &mut n) },
            &format!("store get {key}"),
        )?;
        // SAFETY: `p` holds `n` readable bytes.
        let out = unsafe { std::slice::from_raw_parts(p as *const u8, n) }.to_vec();
        // SAFETY: allocated by hg_dist_store_get.
        unsafe { hg_dist_free(p) };
        Ok(out)
    }

    /// Atomically adds `delta` to the counter `key`; returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let k = c_string(key, "store key")?;
        let mut out: c_long = 0;
        // SAFETY: live handle, valid key and out pointer.
        check(
            unsafe { hg_dist_store_add(self.raw, k.as_ptr(), delta as c_long, &mut out) },
            &format!("store add {key}"),
        )?;
        Ok(out as i64)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: the handle came from hg_dist_store_new and is freed once.
        unsafe { hg_dist_store_free(self.raw) }
    }
}

/// Which c10d backend carries the collectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// CPU tensors.
    Gloo,
    /// CUDA tensors, one device per rank.
    Nccl,
}

impl Backend {
    /// NCCL for CUDA, Gloo otherwise (as torch.distributed's defaults).
    pub fn for_device(device: Device) -> Backend {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }
}

/// A c10d process group over all ranks of a job.
pub struct ProcessGroup {
    raw: *mut c_void,
    pub rank: usize,
    pub world: usize,
    pub backend: Backend,
    /// The store the group was built on (also used for small control messages).
    pub store: Store,
}

// SAFETY: c10d backends are used from one thread at a time here; the handle is only freed in Drop.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the job of `info`: the store rendezvous, then the process group. `timeout` bounds the rendezvous, each
    /// collective and each control message (so a rank busy with a long metric must finish within it).
    /// Gloo binds to the interfaces named by `GLOO_SOCKET_IFNAME` (comma-separated, as torch reads it), else to
    /// the address this host's name resolves to (else loopback).
    pub fn join(info: &WorldInfo, backend: Backend, timeout: Duration) -> Result<ProcessGroup> {
        let interfaces = std::env::var("GLOO_SOCKET_IFNAME").unwrap_or_default();
        Self::join_on(info, backend, timeout, &interfaces)
    }

    /// [`ProcessGroup::join`] with Gloo's interfaces given (comma-separated; empty: the default device).
    pub fn join_on(
        info: &WorldInfo,
        backend: Backend,
        timeout: Duration,
        interfaces: &str,
    ) -> Result<ProcessGroup> {
        let names = c_string(interfaces, "GLOO_SOCKET_IFNAME")?;
        let store = Store::connect(info, timeout)?;
        // SAFETY: live store handle and plain integers; the result is owned here (or null on error).
        let raw = unsafe {
            hg_dist_group_new(
                store.raw,
                info.rank as i32,
                info.world as i32,
                match backend {
                    Backend::Gloo => 0,
                    Backend::Nccl => 1,
                },
                timeout.as_millis() as c_long,
                names.as_ptr(),
            )
        };
        if raw.is_null() {
            let hint = if interfaces.is_empty() {
                String::new()
            } else {
                format!(" (GLOO_SOCKET_IFNAME={interfaces})")
            };
            bail!(
                "rank {}: cannot create the {backend:?} process group of {} ranks{hint}: {}",
                info.rank,
                info.world,
                last_error()
            );
        }
        Ok(ProcessGroup {
            raw,
            rank: info.rank,
            world: info.world,
            backend,
            store,
        })
    }

    fn failed(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "rank {}: {what} across {} ranks failed (did another worker stop? its log names the reason): {}",
            self.rank,
            self.world,
            last_error()
        )
    }

    /// In place: `t ← Σ_ranks t`.
    pub fn all_reduce_sum_(&self, t: &Tensor) -> Result<()> {
        // SAFETY: live group; `t` is a valid tensor borrowed for the call.
        let rc = unsafe { hg_dist_all_reduce_sum(self.raw, t.as_ptr() as *const CTensor) };
        if rc != 0 {
            return Err(self.failed("all-reduce"));
        }
        Ok(())
    }

    /// In place: `t ← mean_ranks t` (Gloo has no AVG, so a sum and one scale).
    pub fn all_reduce_mean_(&self, t: &Tensor) -> Result<()> {
        self.all_reduce_sum_(t)?;
        if self.world > 1 {
            let _ = t.shallow_clone().g_div_scalar_(self.world as f64);
        }
        Ok(())
    }

    /// In place: every rank receives `root`'s `t`.
    pub fn broadcast_(&self, t: &Tensor, root: usize) -> Result<()> {
        // SAFETY: live group; `t` is a valid tensor borrowed for the call.
        let rc = unsafe { hg_dist_broadcast(self.raw, t.as_ptr() as *const CTensor, root as i32) };
        if rc != 0 {
            return Err(self.failed("broadcast"));
        }
        Ok(())
    }

    pub fn barrier(&self) -> Result<()> {
        // SAFETY: live group.
        if unsafe { hg_dist_barrier(self.raw) } != 0 {
            return Err(self.failed("barrier"));
        }
        Ok(())
    }

    /// Rank 0's `value` on every rank, through the store under a fresh `key` (host-side control messages such as
    /// the stop decision; no device is involved).
    pub fn share_from_writer(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        if self.rank == 0 {
            self.store.set(key, value)?;
            Ok(value.to_vec())
        } else {
            self.store.get(key).map_err(|e| {
                anyhow::anyhow!(
                    "rank {}: waiting for rank 0 ({key}) failed (did rank 0 stop? its log names the reason): {e:#}",
                    self.rank
                )
            })
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: the handle came from hg_dist_group_new and is freed once (before the store, a field).
        unsafe { hg_dist_group_free(self.raw) }
    }
}

/// This rank's part of a global minibatch: rank r of W keeps rows [r·n/W, (r+1)·n/W). Every rank draws the whole
/// batch's randomness from the same per-iteration seed and keeps its rows, so the inputs of rank r are those of
/// chunk r of a one-process run: an N-process run computes exactly what a one-process run with N chunks does,
/// up to the order of the gradient sums (docs/ARCHITECTURE.md "Data parallelism").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: i64,
    pub world: i64,
}

impl Shard {
    /// The whole batch (a one-process run).
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };

    pub fn is_whole(&self) -> bool {
        self.world == 1
    }

    /// (offset, length) of this rank's rows of a global batch of `n` (which the ranks divide evenly).
    pub fn rows(&self, n: i64) -> (i64, i64) {
        let len = n / self.world;
        (self.rank * len, len)
    }

    /// This rank's rows of `t` along `dim`, where `t` holds the global batch; `t` itself for the whole batch.
    pub fn take(&self, t: Tensor, dim: i64) -> Tensor {
        if self.is_whole() {
            return t;
        }
        let (off, len) = self.rows(t.size()[dim as usize]);
        t.narrow(dim, off, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn world_info_follows_torchrun() {
        assert_eq!(WorldInfo::from_lookup(env(&[])).unwrap(), None);
        let w = WorldInfo::from_lookup(env(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "29500"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            w,
            WorldInfo {
                rank: 3,
                world: 4,
                local_rank: 1,
                master_addr: "node7".into(),
                master_port: 29500
            }
        );
        assert!(!w.is_writer());
        let w = WorldInfo::from_lookup(env(&[
            ("WORLD_SIZE", "2"),
            ("RANK", "0"),
            ("MASTER_PORT", "1234"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((w.local_rank, w.master_addr.as_str()), (0, "127.0.0.1"));
        for (vars, needle) in [
            (vec![("WORLD_SIZE", "2"), ("MASTER_PORT", "1")], "RANK"),
            (
                vec![("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_PORT", "1")],
                "RANK=2",
            ),
            (
                vec![("WORLD_SIZE", "two"), ("RANK", "0"), ("MASTER_PORT", "1")],
                "WORLD_SIZE",
            ),
            (vec![("WORLD_SIZE", "2"), ("RANK", "0")], "MASTER_PORT"),
            (
                vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "99999")],
                "MASTER_PORT",
            ),
        ] {
            let e = WorldInfo::from_lookup(env(&vars)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn shards_tile_the_batch() {
        let t = Tensor::arange(12, (tch::Kind::Int64, Device::Cpu)).view([6, 2]);
        let parts: Vec<Tensor> = (0..3)
            .map(|r| Shard { rank: r, world: 3 }.take(t.shallow_clone(), 0))
            .collect();
        assert_eq!(Tensor::cat(&parts, 0), t);
        assert_eq!(Shard { rank: 2, world: 3 }.rows(6), (4, 2));
        assert_eq!(Shard::WHOLE.take(t.shallow_clone(), 0), t);
    }

    /// Two ranks in two threads of this process, over Gloo on loopback: sum, mean, broadcast, barrier, store.
    #[test]
    fn gloo_collectives_between_two_ranks() {
        let results = on_two_ranks(|info| {
            let rank = info.rank;
            let pg = ProcessGroup::join(&info, Backend::Gloo, Duration::from_secs(60)).unwrap();
            let t = Tensor::from_slice(&[1.0f32 + rank as f32, 10.0]);
            pg.all_reduce_sum_(&t).unwrap();
            let sum = Vec::<f32>::try_from(&t).unwrap();
            let m = Tensor::from_slice(&[2.0f32 * rank as f32]);
            pg.all_reduce_mean_(&m).unwrap();
            let b = Tensor::from_slice(&[rank as f32 + 5.0; 3]);
            pg.broadcast_(&b, 1).unwrap();
            pg.barrier().unwrap();
            let shared = pg
                .share_from_writer("k", format!("from {rank}").as_bytes())
                .unwrap();
            (
                sum,
                m.double_value(&[]),
                Vec::<f32>::try_from(&b).unwrap(),
                String::from_utf8(shared).unwrap(),
            )
        });
        for (sum, mean, b, shared) in results {
            assert_eq!(sum, vec![3.0, 20.0]);
            assert_eq!(mean, 1.0);
            assert_eq!(b, vec![6.0; 3]);
            assert_eq!(shared, "from 0");
        }
    }

    /// GLOO_SOCKET_IFNAME's path: the group on a named interface works, and an unknown interface is an error that
    /// names it.
    #[test]
    fn gloo_binds_to_a_named_interface() {
        let results = on_two_ranks(|info| {
            let pg =
                ProcessGroup::join_on(&info, Backend::Gloo, Duration::from_secs(60), "lo").unwrap();
            let t = Tensor::from_slice(&[info.rank as f32 + 1.0]);
            pg.all_reduce_sum_(&t).unwrap();
            t.double_value(&[0])
        });
        assert_eq!(results, vec![3.0, 3.0]);
        let info = WorldInfo {
            rank: 0,
            world: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: free_port(),
        };
        let e = ProcessGroup::join_on(&info, Backend::Gloo, Duration::from_secs(10), "nosuchif0")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("GLOO_SOCKET_IFNAME=nosuchif0"), "{e}");
    }

    /// `f` as ranks 0 and 1 of a job on 127.0.0.1, each in its own thread; their results in rank order.
    fn on_two_ranks<T: Send + 'static>(f: fn(WorldInfo) -> T) -> Vec<T> {
        let port = free_port();
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let info = WorldInfo {
                    rank,
                    world: 2,
                    local_rank: rank,
                    master_addr: "127.0.0.1".into(),
                    master_port: port,
                };
                std::thread::spawn(move || f(info))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    /// A port that was free a moment ago (the OS picks it).
    pub(crate) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
