//! The training loader: seeded per-epoch shuffles over a memory-mapped level, batches prefetched on a background
//! thread, and a small serialisable state so that a resumed run sees exactly the images it would have seen
//! (docs/spec/progan_hp.md §2.9: any reader with per-epoch shuffling is equivalent to the reference's shuffle buffer).
//!
//! Order: the image at stream position `p` of level `l` is `perm(seed, l, p / N)[p % N]`, a Fisher–Yates
//! permutation seeded by (seed, level, epoch). The state is the position per level, so the batches depend only on
//! (seed, state, requests), never on prefetching or timing.

use super::format::Dataset;
use crate::core::rng;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::Tensor;

/// Where the loader stands: the next stream position of every level used so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// Number of images of the dataset the positions refer to (checked on resume).
    pub count: u64,
    /// log2 resolution → images delivered so far at that level.
    pub positions: BTreeMap<u32, u64>,
}

/// A cached permutation, keyed by (level, epoch).
type CachedPerm = ((u32, u64), Arc<Vec<u32>>);

/// Per-epoch permutations, cached (a permutation of N costs O(N); a batch needs at most two).
struct Sampler {
    seed: u64,
    n: usize,
    cache: VecDeque<CachedPerm>,
}

impl Sampler {
    fn new(seed: u64, n: usize) -> Self {
        Sampler {
            seed,
            n,
            cache: VecDeque::new(),
        }
    }

    fn perm(&mut self, level: u32, epoch: u64) -> Arc<Vec<u32>> {
        if let Some((_, p)) = self.cache.iter().find(|(k, _)| *k == (level, epoch)) {
            return p.clone();
        }
        let p = Arc::new(epoch_permutation(self.seed, level, epoch, self.n));
        if self.cache.len() >= 4 {
            self.cache.pop_front();
        }
        self.cache.push_back(((level, epoch), p.clone()));
        p
    }

    /// Dataset indices of stream positions start .. start + len at `level`.
    fn indices(&mut self, level: u32, start: u64, len: usize) -> Vec<u32> {
        let n = self.n as u64;
        let mut out = Vec::with_capacity(len);
        let mut p = start;
        while out.len() < len {
            let epoch = p / n;
            let perm = self.perm(level, epoch);
            let from = (p % n) as usize;
            let take = (len - out.len()).min(self.n - from);
            out.extend_from_slice(&perm[from..from + take]);
            p += take as u64;
        }
        out
    }
}

/// The permutation of epoch `epoch` at level `level` (public so tests and tools can check the order).
pub fn epoch_permutation(seed: u64, level: u32, epoch: u64, n: usize) -> Vec<u32> {
    rng::permutation(n, rng::derive_seed(seed, &[0x10ad, level as u64, epoch]))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    level: u32,
    batch: usize,
    start: u64,
}

struct Worker {
    requests: Option<Sender<Key>>,
    results: Receiver<(Key, Tensor)>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the request channel ends the thread's loop.
        self.requests.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The rows this process keeps of every batch: part `index` of `parts` equal parts (a data-parallel rank's share of
/// the global minibatch, issue 21). Every part advances the stream by the whole batch, so all ranks stand at the same
/// position, the one a one-process run would have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub index: usize,
    pub parts: usize,
}

impl Part {
    pub const WHOLE: Part = Part { index: 0, parts: 1 };

    /// (first stream offset within the batch, rows) of this part of a batch of `batch`.
    fn rows(&self, batch: usize) -> (u64, usize) {
        let len = batch / self.parts;
        ((self.index * len) as u64, len)
    }
}

fn gather(dataset: &Dataset, sampler: &mut Sampler, key: Key, part: Part) -> Tensor {
    let level = dataset
        .level(key.level)
        .expect("level checked before the request");
    let (offset, len) = part.rows(key.batch);
    level.tensor(&sampler.indices(key.level, key.start + offset, len))
}

/// Batches of real images for the trainer.
pub struct Loader {
    dataset: Arc<Dataset>,
    seed: u64,
    state: LoaderState,
    sampler: Sampler,
    depth: usize,
    worker: Option<Worker>,
    pending: VecDeque<Key>,
    part: Part,
}

/// Batches prefetched ahead by default.
pub const DEFAULT_PREFETCH: usize = 2;

impl Loader {
    /// A loader at the start of every level's stream, prefetching [`DEFAULT_PREFETCH`] batches.
    pub fn new(dataset: Arc<Dataset>, seed: u64) -> Loader {
        let count = dataset.count() as u64;
        Self::build(
            dataset,
            seed,
            LoaderState {
                count,
                positions: BTreeMap::new(),
            },
        )
    }

    /// A loader that continues from `state` (saved by [`Loader::state`] with the same seed and dataset).
    pub fn with_state(dataset: Arc<Dataset>, seed: u64, state: LoaderState) -> Result<Loader> {
        ensure!(
            state.count == dataset.count() as u64,
            "the saved loader state is for a dataset of {} images, but {} holds {}; resume with the same dataset",
            state.count,
            dataset.dir().display(),
            dataset.count()
        );
        Ok(Self::build(dataset, seed, state))
    }

    fn build(dataset: Arc<Dataset>, seed: u64, state: LoaderState) -> Loader {
        let n = dataset.count();
        Loader {
            dataset,
            seed,
            state,
            sampler: Sampler::new(seed, n),
            depth: DEFAULT_PREFETCH,
            worker: None,
            pending: VecDeque::new(),
            part: Part::WHOLE,
        }
    }

    /// Delivers only `part` of every batch from now on (batch sizes must then be multiples of `part.parts`).
    pub fn set_part(&mut self, part: Part) -> Result<()> {
        ensure!(
            part.parts >= 1 && part.index < part.parts,
            "loader part {} of {} does not exist",
            part.index,
            part.parts
        );
        self.drain();
        self.worker = None;
        self.part = part;
        Ok(())
    }

    /// Sets how many batches are prepared ahead on the background thread (0 = none; every batch is then read
    /// synchronously). The batches delivered are the same either way.
    pub fn set_prefetch(&mut self, depth: usize) {
        self.drain();
        self.depth = depth;
        if depth == 0 {
            self.worker = None;
        }
    }

    /// The position of every level, to save with a checkpoint.
    pub fn state(&self) -> LoaderState {
        self.state.clone()
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// The next `batch` images of level `level_log2` as a CPU uint8 tensor [batch, C, 2^l, 2^l].
    pub fn next_batch(&mut self, level_log2: u32, batch: usize) -> Result<Tensor> {
        ensure!(batch > 0, "batch size must be at least 1");
        ensure!(
            batch.is_multiple_of(self.part.parts),
            "a batch of {batch} does not split into {} equal parts",
            self.part.parts
        );
        self.dataset.level(level_log2)?;
        let start = *self.state.positions.get(&level_log2).unwrap_or(&0);
        let key = Key {
            level: level_log2,
            batch,
            start,
        };
        let batch_tensor = if self.pending.front() == Some(&key) {
            self.pending.pop_front();
            let worker = self.worker.as_ref().expect("pending implies a worker");
            let (got, t) = worker
                .results
                .recv()
                .context("the loader's prefetch thread stopped")?;
            debug_assert_eq!(got, key);
            t
        } else {
            self.drain();
            gather(&self.dataset, &mut self.sampler, key, self.part)
        };
        self.state
            .positions
            .insert(level_log2, start + batch as u64);
        self.top_up(key);
        Ok(batch_tensor)
    }

    /// Discards prefetched batches that will not be asked for.
    fn drain(&mut self) {
        if let Some(w) = &self.worker {
            for _ in self.pending.drain(..) {
                let _ = w.results.recv();
            }
        }
        self.pending.clear();
    }

    /// Requests the batches after `last` (same level and size), up to the prefetch depth.
    fn top_up(&mut self, last: Key) {
        if self.depth == 0 {
            return;
        }
        if self.worker.is_none() {
            self.worker = Some(self.spawn_worker());
        }
        let worker = self.worker.as_ref().expect("just spawned");
        let mut next = self.pending.back().copied().unwrap_or(last);
        while self.pending.len() < self.depth {
            next.start += next.batch as u64;
            let sent = worker
                .requests
                .as_ref()
                .map(|tx| tx.send(next).is_ok())
                .unwrap_or(false);
            if !sent {
                // The thread is gone; fall back to synchronous reads.
                break;
            }
            self.pending.push_back(next);
        }
    }

    fn spawn_worker(&self) -> Worker {
        let (req_tx, req_rx) = channel::<Key>();
        let (res_tx, res_rx) = channel::<(Key, Tensor)>();
        let dataset = self.dataset.clone();
        let mut sampler = Sampler::new(self.seed, dataset.count());
        let part = self.part;
        let handle = std::thread::Builder::new()
            .name("loader-prefetch".into())
            .spawn(move || {
                while let Ok(key) = req_rx.recv() {
                    let data = gather(&dataset, &mut sampler, key, part);
                    if res_tx.send((key, data)).is_err() {
                        break;
                    }
                }
            })
            .expect("cannot start the loader's prefetch thread");
        Worker {
            requests: Some(req_tx),
            results: res_rx,
            handle: Some(handle),
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.drain();
    }
}

/// Result of [`bench`].
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub dataset: String,
    pub resolution: u32,
    pub batch: usize,
    pub batches: usize,
    pub prefetch: usize,
    pub seconds: f64,
    pub images_per_s: f64,
    pub megabytes_per_s: f64,
}

/// Times `batches` batches of the loader alone at `resolution` (after one warm-up batch).
pub fn bench(
    dataset: Arc<Dataset>,
    seed: u64,
    resolution: u32,
    batch: usize,
    batches: usize,
    prefetch: usize,
) -> Result<BenchReport> {
    ensure!(
        resolution.is_power_of_two(),
        "--resolution {resolution} is not a power of two"
    );
    ensure!(batches > 0, "--batches must be at least 1");
    let log2 = resolution.trailing_zeros();
    let bytes = dataset.level(log2)?.image_bytes();
    let name = dataset.meta().name.clone();
    let mut loader = Loader::new(dataset, seed);
    loader.set_prefetch(prefetch);
    let _ = loader.next_batch(log2, batch)?;
    let t0 = std::time::Instant::now();
    for _ in 0..batches {
        let t = loader.next_batch(log2, batch)?;
        std::hint::black_box(&t);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let images = (batch * batches) as f64;
    Ok(BenchReport {
        dataset: name,
        resolution,
        batch,
        batches,
        prefetch,
        seconds,
        images_per_s: images / seconds,
        megabytes_per_s: images * bytes as f64 / seconds / 1e6,
    })
}
