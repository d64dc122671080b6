//! The trainer: ProGAN with the Hessian Penalty (or the InfoGAN baseline), as the reference trained it
//! (docs/spec/progan_hp.md §2, §3), with exact resume.
//!
//! `Trainer::train` reads top to bottom: set-up → the loop of {schedule, 4 × iteration} → at each tick the
//! report, the images and the snapshot. An iteration (D step, Gs EMA, G step) is in `steps.rs`, the losses it
//! applies in `loss.rs`, everything a tick writes in `report.rs`. The snapshot format lives in `checkpoint`.
//!
//! May import: `checkpoint`, `config`, `metrics`, `data`, `core`, `io` (ARCHITECTURE.md).

pub mod infogan_cr;
pub mod loss;
pub mod report;
pub mod steps;

use crate::checkpoint::{save_snapshot, LoadedSnapshot, Models, TrainState};
use crate::config::TrainConfig;
use crate::core::device::{device_name, short_description};
use crate::core::distributed::{ProcessGroup, Shard};
use crate::core::latents;
use crate::core::schedule::{hp_weight, ScheduleConfig};
use crate::data::{Dataset, Loader};
use crate::io::fs;
use crate::io::tensorboard::EventWriter;
use crate::metrics::predictor::{FactorPredictor, PredictorOptions};
use crate::metrics::MetricSuite;
use anyhow::{ensure, Result};
use loss::Loss;
use report::{format_duration, grid_size, TickStats, TickTiming};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The reference recomputes the schedule every 4 iterations (`minibatch_repeats`, docs/spec/progan_hp.md §2.1).
const MINIBATCH_REPEATS: usize = 4;
/// How often (in iterations) the consecutive-skip counter is read back from the device.
const SKIP_CHECK_ITERATIONS: u64 = 64;
/// What a data-parallel rank other than 0 never reaches: everything that writes the run directory.
const WRITER_ONLY: &str = "only rank 0 writes the run directory";

/// A training run in progress: the loop of `train`, exposed step by step for tests and benchmarks.
pub struct Trainer {
    cfg: TrainConfig,
    sched: ScheduleConfig,
    device: Device,
    dataset: Arc<Dataset>,
    loader: Loader,
    models: Models,
    state: TrainState,
    run_dir: PathBuf,
    loss: Loss,
    /// The regularised layers that exist at this resolution.
    hp_layers: Vec<usize>,
    grid_z: Tensor,
    interp_z: Tensor,
    stats: TickStats,
    /// TensorBoard events (rank 0 only).
    events: Option<EventWriter>,
    /// The data-parallel job this trainer is one rank of (`train --nproc`, or an external launcher).
    group: Option<ProcessGroup>,
    /// The metric networks, loaded when training starts with `metrics` set.
    metrics: Option<MetricSuite>,
    /// The factor predictor of the score ticks, loaded (or trained and cached) when training starts.
    scorer: Option<FactorPredictor>,
    /// The reals' per-pixel std (`report::diversity`) and the collapse guard that compares the fakes' with it.
    real_diversity: f64,
    /// The last tick's fakes/reals diversity ratio (recorded beside the scores of a score tick).
    diversity_ratio: Option<f64>,
    collapse: report::CollapseGuard,
    /// The snapshot this run resumed from: the last good one until the run writes its own.
    resumed_from: Option<PathBuf>,
    /// This thread's log records also go to `<run_dir>/log.txt` while the trainer lives.
    _log: crate::io::log::Tee,
}

impl Trainer {
    /// Networks (fresh from `cfg.seed`, or `resumed`), optimisers, loader and run-directory outputs for a run in
    /// `run_dir` (which must exist).
    pub fn new(
        cfg: TrainConfig,
        device: Device,
        dataset: Arc<Dataset>,
        run_dir: PathBuf,
        resumed: Option<LoadedSnapshot>,
    ) -> Result<Self> {
        Self::new_in_group(cfg, device, dataset, run_dir, resumed, None)
    }

    /// [`Trainer::new`] for one rank of a data-parallel job (issue 21). Every rank builds the same networks from
    /// the same seed (or snapshot), then takes rank 0's weights and Adam state; each iteration every rank draws the
    /// global batch's randomness, keeps its rows (`Shard`), and the flat gradients are averaged before Adam, so the
    /// ranks stay identical. Only rank 0 writes the run directory (log.txt, TensorBoard, grids, snapshots); rank r
    /// logs to `log-rank<r>.txt`.
    pub fn new_in_group(
        mut cfg: TrainConfig,
        device: Device,
        dataset: Arc<Dataset>,
        run_dir: PathBuf,
        resumed: Option<LoadedSnapshot>,
        group: Option<ProcessGroup>,
    ) -> Result<Self> {
        // libtorch lets cuDNN use TF32 by default; outside `--precision` regions everything is strict float32.
        crate::core::precision::set_strict_fp32();
        if device.is_cuda() {
            // Fixed shapes per phase: let cuDNN pick the fastest algorithms once.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let shard = group.as_ref().map_or(Shard::WHOLE, |g| Shard {
            rank: g.rank as i64,
            world: g.world as i64,
        });
        let writer = shard.rank == 0;
        let log_name = if writer {
            "log.txt".to_string()
        } else {
            std::fs::create_dir_all(&run_dir)?;
            format!("log-rank{}.txt", shard.rank)
        };
        let log = crate::io::log::tee_to(&run_dir.join(log_name))?;
        tch::manual_seed(steps::iteration_seed(cfg.seed, u64::MAX));
        let mut models = Models::new(&cfg, device)?;
        let mut state = TrainState {
            hp_start_kimg: cfg.hp_start_kimg,
            ..Default::default()
        };
        let mut notes = Vec::new();
        if let Some(snap) = &resumed {
            models.load(&snap.tensors, &snap.path)?;
            state = snap.state.clone();
            state.hp_start_kimg = cfg.hp_start_kimg;
            // Fine-tuning a run trained without HP: the penalty ramps from 0 at the resume point (§2.6). The
            // reference decided this from the checkpoint's path; the snapshot's own config says it exactly.
            if snap.config.hp_lambda == 0.0 && cfg.hp_lambda > 0.0 {
                state.hp_start_kimg = cfg.hp_start_kimg + state.cur_nimg as f64 / 1000.0;
                notes.push(format!(
                    "fine-tuning a run without HP: the penalty ramps from 0 at {:.1} kimg over {} kimg",
                    state.hp_start_kimg, cfg.warmup_kimg
                ));
            }
            notes.push(format!(
                "resumed from {} at {:.1} kimg",
                snap.path.display(),
                state.cur_nimg as f64 / 1000.0
            ));
        }
        cfg.hp_start_kimg = state.hp_start_kimg;
        let mut loader = match &resumed {
            // An imported reference checkpoint records no data position: the data order starts afresh.
            Some(_) if state.loader.count == 0 => {
                notes.push("the snapshot records no data position (an imported checkpoint): the data order starts from the beginning".into());
                Loader::new(dataset.clone(), cfg.seed)
            }
            Some(_) => Loader::with_state(dataset.clone(), cfg.seed, state.loader.clone())?,
            None => Loader::new(dataset.clone(), cfg.seed),
        };
        loader.set_part(crate::data::Part {
            index: shard.rank as usize,
            parts: shard.world as usize,
        })?;
        if let Some(g) = &group {
            // Rank 0's weights and optimiser state everywhere (they agree already when every rank starts from the
            // same seed or snapshot; this makes it so).
            for t in models.synchronised_state() {
                g.broadcast_(&t, 0)?;
            }
            notes.push(format!(
                "rank {} of {} ({:?}): {} of the {} chunks of every minibatch",
                g.rank,
                g.world,
                g.backend,
                cfg.num_gpus / g.world as i64,
                cfg.num_gpus
            ));
        }
        // Fixed latents for the fakes grid and the traversal GIFs, drawn once from the run seed (§2.1, §7.2).
        let (grid_w, grid_h) = grid_size(cfg.resolution);
        let grid_z = Tensor::randn([grid_w * grid_h, cfg.nz], (Kind::Float, device));
        let interp_z = Tensor::randn([8, cfg.nz], (Kind::Float, device));
        // The fakes grid's latents, so that `visualize --z` renders the same samples from any snapshot.
        if writer {
            latents::write_npy(&grid_z, &run_dir.join("z.npy"))?;
        }
        let hp_layers = cfg.hp_layers();
        log::info!(
            "run {} on {} ({}), dataset {} ({} images)",
            run_dir.display(),
            device_name(device),
            short_description(device),
            cfg.dataset,
            dataset.meta().count
        );
        let dropped: Vec<usize> = cfg
            .layers_to_reg
            .iter()
            .copied()
            .filter(|l| !hp_layers.contains(l))
            .collect();
        if cfg.hp_lambda > 0.0 && !dropped.is_empty() {
            notes.push(format!(
                "layers {dropped:?} do not exist at {}²; regularising {hp_layers:?}",
                cfg.resolution
            ));
        }
        for n in notes {
            log::info!("{n}");
        }
        Ok(Self {
            sched: cfg.schedule(),
            loss: Loss::new(&cfg, device)?.with_shard(shard)?,
            events: if writer {
                Some(EventWriter::create(&run_dir)?)
            } else {
                None
            },
            group,
            cfg,
            device,
            dataset,
            loader,
            models,
            state,
            run_dir,
            hp_layers,
            grid_z,
            interp_z,
            stats: TickStats::default(),
            metrics: None,
            scorer: None,
            real_diversity: 0.0,
            diversity_ratio: None,
            collapse: report::CollapseGuard::default(),
            resumed_from: resumed.as_ref().map(|s| s.path.clone()),
            _log: log,
        })
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The Hessian Penalty estimator of this run (k, ε, chunks).
    pub fn hessian_penalty(&self) -> &crate::core::hessian::HessianPenalty {
        &self.loss.hp
    }

    /// Means of the scalars logged since the last call (a host read per key).
    pub fn take_stats(&mut self) -> Vec<(String, f64)> {
        self.stats.take()
    }

    /// The whole run: iterations, ticks, snapshots, until total_kimg, abort.txt or Ctrl-C.
    pub fn train(&mut self) -> Result<()> {
        // Set-up.
        report::install_ctrlc();
        let total_nimg = (self.cfg.total_kimg * 1000.0).round() as u64;
        ensure!(
            self.state.cur_nimg < total_nimg,
            "--total-kimg {} is not beyond the resumed snapshot's {:.1} kimg; raise --total-kimg",
            self.cfg.total_kimg,
            self.state.cur_nimg as f64 / 1000.0
        );
        let writer = self.is_writer();
        if writer {
            self.load_metrics()?;
            self.load_scorer()?;
            self.real_diversity = self.write_reals_grid()?;
            self.write_fakes_grid()?;
            if self.cfg.compute_interp_ticks > 0 && self.cfg.compute_interp_ticks < 9999 {
                self.write_traversals()?;
            }
        }
        let bar = if writer {
            crate::io::progress::bar(Some(total_nimg / 1000), "kimg")
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_position(self.state.cur_nimg / 1000);
        let start = Instant::now();
        let mut tick = 0i64;
        let mut tick_start_nimg = self.state.cur_nimg;
        let mut tick_start_time = Instant::now();

        while self.state.cur_nimg < total_nimg {
            // The iteration: the schedule (Adam is reset when the lod crosses an integer, §2.3), then four
            // D/G iterations on it.
            let phase = self.sched.at(self.state.cur_nimg);
            let bounds = (phase.lod.floor() as i64, phase.lod.ceil() as i64);
            if self.state.lod_bounds != Some(bounds) {
                self.models.opt_g.reset();
                self.models.opt_d.reset();
                self.state.lod_bounds = Some(bounds);
            }
            for _ in 0..MINIBATCH_REPEATS {
                self.iteration(phase.lod, phase.resolution, phase.minibatch)?;
                if self.state.iteration.is_multiple_of(SKIP_CHECK_ITERATIONS) {
                    self.check_skips()?;
                }
            }
            bar.set_position(self.state.cur_nimg / 1000);

            // The tick: report, images, and on snapshot ticks the snapshot and the metrics (§2.7).
            let done = self.state.cur_nimg >= total_nimg;
            let stop = self.agreed_stop()?;
            let tick_due =
                self.state.cur_nimg >= tick_start_nimg + (phase.tick_kimg * 1000.0) as u64;
            if !(tick_due || done || stop.is_some()) {
                continue;
            }
            tick += 1;
            if !writer {
                // Rank 0 reports and writes; the others only keep their tick bookkeeping in step.
                let _ = self.stats.take();
                tick_start_nimg = self.state.cur_nimg;
                tick_start_time = Instant::now();
                if stop.is_some() {
                    return Ok(());
                }
                continue;
            }
            let timing = TickTiming {
                tick,
                total: start.elapsed().as_secs_f64(),
                seconds: tick_start_time.elapsed().as_secs_f64(),
                kimg: (self.state.cur_nimg - tick_start_nimg) as f64 / 1000.0,
            };
            let maintenance = Instant::now();
            let stats = self.stats.take();
            let hp_w = self.hp_weight_now();
            let (line, message) = self.tick_line(&timing, &phase, hp_w, &stats);
            log::info!("{line}");
            bar.set_message(message);
            self.log_tick_scalars(&stats, &phase, hp_w, &timing)?;
            let diversity = self.write_fakes_grid()?;
            self.check_collapse(diversity)?;
            let interp = self.cfg.compute_interp_ticks;
            if interp > 0 && tick % interp == 0 {
                self.write_traversals()?;
            }

            // The snapshot.
            let snapshot_due = tick == 1 || tick % self.cfg.network_snapshot_ticks == 0;
            if snapshot_due || done || stop.is_some() {
                let snapshot = self.save()?;
                let metrics_due = crate::metrics::due(tick, self.cfg.compute_metrics_ticks, done);
                if metrics_due && stop.is_none() {
                    self.compute_metrics(&snapshot)?;
                }
                if crate::metrics::due(tick, self.cfg.score_ticks, done) && stop.is_none() {
                    // A measurement must not end a run that trained fine: the snapshot is already written.
                    if let Err(e) = self.compute_scores(&snapshot) {
                        log::warn!(
                            "the scores of {} failed, training goes on: {e:#}",
                            snapshot.display()
                        );
                    }
                }
            }
            log::debug!("  maintenance {:.1} s", maintenance.elapsed().as_secs_f64());
            tick_start_nimg = self.state.cur_nimg;
            tick_start_time = Instant::now();
            if let Some(reason) = stop {
                bar.abandon();
                log::info!(
                    "stopped ({reason}) at {:.1} kimg; resume with --resume-exp",
                    self.state.cur_nimg as f64 / 1000.0
                );
                return Ok(());
            }
        }
        bar.finish();
        if !writer {
            return Ok(());
        }
        fs::write_bytes_atomic(&self.run_dir.join("_finished.txt"), b"")?;
        log::info!(
            "done: {} in {}",
            self.run_dir.display(),
            format_duration(start.elapsed().as_secs_f64())
        );
        Ok(())
    }

    /// The process group back, when the trainer is done with it (the benchmark runs several trainers in one job).
    pub fn into_group(self) -> Option<ProcessGroup> {
        self.group
    }

    /// Whether this process writes the run directory: a one-process run, or rank 0 of a data-parallel job.
    pub fn is_writer(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.rank == 0)
    }

    /// Why the run stops at this point, if it does: `abort.txt` or Ctrl-C as rank 0 sees them, shared with every
    /// rank through the store (a host-side message every 4 iterations; the device is not involved).
    fn agreed_stop(&self) -> Result<Option<String>> {
        let mine = report::stop_request(&self.run_dir);
        let Some(g) = &self.group else {
            return Ok(mine);
        };
        let key = format!("stop/{}", self.state.iteration);
        let agreed = g.share_from_writer(&key, mine.unwrap_or_default().as_bytes())?;
        Ok((!agreed.is_empty()).then(|| String::from_utf8_lossy(&agreed).into_owned()))
    }

    /// λ_t, the HP weight at the images shown so far (§2.6).
    fn hp_weight_now(&self) -> f64 {
        hp_weight(
            self.cfg.hp_lambda,
            self.state.hp_start_kimg,
            self.cfg.warmup_kimg,
            self.state.cur_nimg,
        )
    }

    fn current_lod(&self) -> f64 {
        self.sched.at(self.state.cur_nimg).lod
    }

    /// Loads the metric networks (downloading them if needed) before the first iteration, so a missing network
    /// fails at once rather than at the first snapshot tick.
    fn load_metrics(&mut self) -> Result<()> {
        let kinds = crate::metrics::parse_names(&self.cfg.metrics)?;
        if !kinds.is_empty() && self.metrics.is_none() {
            let opts = self.cfg.metrics_options.clone();
            self.metrics = Some(MetricSuite::new(&kinds, opts, self.device)?);
        }
        Ok(())
    }

    /// The factor predictor of `--score-ticks` (trained once per dataset and resolution, then cached), loaded
    /// before the first iteration so that a dataset without factors fails at once.
    fn load_scorer(&mut self) -> Result<()> {
        if self.cfg.score_ticks > 0 && self.scorer.is_none() {
            let log2 = self.cfg.resolution.trailing_zeros();
            let p = FactorPredictor::load_or_train(
                &self.dataset,
                log2,
                &self.cfg.metrics_options.cache_dir,
                &PredictorOptions::default(),
                self.device,
            )
            .map_err(|e| anyhow::anyhow!("--score-ticks: {e:#}"))?;
            self.scorer = Some(p);
        }
        Ok(())
    }

    /// `network-snapshot-<kimg>.safetensors` with the Adam state and the loader position.
    fn save(&mut self) -> Result<PathBuf> {
        self.state.loader = self.loader.state();
        let kimg = self.state.cur_nimg / 1000;
        let path = self
            .run_dir
            .join(format!("network-snapshot-{kimg:06}.safetensors"));
        save_snapshot(&path, &self.models, &self.cfg, &self.state, true)?;
        let skipped = self.models.opt_g.skipped.double_value(&[])
            + self.models.opt_d.skipped.double_value(&[]);
        log::info!(
            "snapshot {} (skipped updates so far: {skipped})",
            path.display()
        );
        Ok(path)
    }
}
