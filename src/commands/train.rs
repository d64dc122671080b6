//! `hessian-gan train`: the configuration (defaults < snapshot being resumed < preset < command line), the
//! dataset, the run directory, then the trainer (docs/spec/progan_hp.md §2, §4.1). `--model infogan-cr` (or a preset
//! or resumed snapshot of that model) trains InfoGAN-CR instead (docs/spec/geometry_infogancr.md §B.1).

use crate::checkpoint::{find_snapshot, infogan_cr, load_snapshot, next_run_dir, run_dir_of};
use crate::commands::{launch, Globals};
use crate::config::infogan_cr::{is_cr_config, CrConfig, MODEL as CR_MODEL};
use crate::config::TrainConfig;
use crate::core::distributed::{Backend, ProcessGroup, WorldInfo};
use crate::core::networks;
use crate::core::networks::infogan_cr::parameter_counts;
use crate::core::schedule::ScheduleConfig;
use crate::data::{locate, Dataset};
use crate::io::fs;
use crate::training::infogan_cr::CrTrainer;
use crate::training::Trainer;
use anyhow::{ensure, Context, Result};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// What `train` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct TrainRequest {
    /// A preset, e.g. configs/clevr_simple_hp.json.
    pub config: Option<PathBuf>,
    /// Resolve the configuration and describe it instead of training.
    pub dry_run: bool,
    /// Results run number to resume or fine-tune, and which of its snapshots (`latest` or a kimg number).
    pub resume_exp: Option<u32>,
    pub resume_snapshot: String,
    /// A snapshot file to resume from instead of `resume_exp`.
    pub resume: Option<PathBuf>,
    /// Settings given on the command line, as JSON fields named like [`TrainConfig`]'s.
    pub overrides: Map<String, Value>,
    /// Data-parallel worker processes to start on this machine (`--nproc`; 0 or 1: this process trains).
    pub nproc: usize,
    /// The rendezvous port of `--nproc` (default: a free one).
    pub master_port: Option<u16>,
    /// How long a rank waits for the others (collectives, rank 0's decisions) before the job fails.
    pub dist_timeout: std::time::Duration,
}

/// What `train` did.
#[derive(Debug)]
pub enum TrainOutcome {
    /// `--dry-run`: the resolved configuration (JSON), the network summary and the schedule table.
    DryRun {
        config: String,
        networks: String,
        schedule: String,
    },
    /// A run that ended (finished, aborted or interrupted) in this directory.
    Trained { run_dir: PathBuf },
}

/// The settings of a preset file as JSON (Null when there is none or it is unreadable: resolving reports that).
fn preset_json(request: &TrainRequest) -> Value {
    request
        .config
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Which model `request` trains: `--model` (`progan` or `infogan-cr`), else the preset's `model`, else the model
/// of the snapshot being resumed, else ProGAN. Returns whether it is InfoGAN-CR.
fn is_infogan_cr(request: &TrainRequest) -> Result<bool> {
    let preset = preset_json(request);
    let named = request
        .overrides
        .get("model")
        .or_else(|| preset.get("model"))
        .and_then(Value::as_str);
    match named {
        Some(CR_MODEL) => return Ok(true),
        Some("progan") => return Ok(false),
        Some(other) => anyhow::bail!("--model {other}: expected progan or {CR_MODEL}"),
        None => {}
    }
    let run_config = |dir: &std::path::Path| -> bool {
        std::fs::read_to_string(dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| is_cr_config(&v))
    };
    Ok(match (&request.resume, request.resume_exp) {
        (Some(path), _) => infogan_cr::is_cr_snapshot(path),
        (None, Some(exp)) => {
            let results = request
                .overrides
                .get("results_dir")
                .or_else(|| preset.get("results_dir"))
                .and_then(Value::as_str)
                .map_or_else(|| TrainConfig::default().results_dir, PathBuf::from);
            run_dir_of(&results, exp).is_ok_and(|d| run_config(&d))
        }
        (None, None) => false,
    })
}

/// The snapshot `request` resumes from: `--resume FILE`, or `--resume-snapshot` of run `--resume-exp`, looked up in
/// the results directory that `results_dir` gives (the one the preset or the command line names).
fn resume_path(
    request: &TrainRequest,
    results_dir: impl FnOnce() -> PathBuf,
) -> Result<Option<PathBuf>> {
    Ok(match (&request.resume, request.resume_exp) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(exp)) => Some(find_snapshot(
            &run_dir_of(&results_dir(), exp)?,
            &request.resume_snapshot,
        )?),
        (None, None) => None,
    })
}

/// The configuration `request` resolves to, and the snapshot it resumes from.
pub fn resolve(
    globals: &Globals,
    request: &TrainRequest,
) -> Result<(TrainConfig, Option<crate::checkpoint::LoadedSnapshot>)> {
    let preset = request.config.as_deref();
    let mut request = request.clone();
    // `--model progan` names the default model; TrainConfig has no such field.
    request.overrides.remove("model");
    let request = &request;
    let resume_path = resume_path(request, || {
        TrainConfig::resolve(TrainConfig::default(), preset, request.overrides.clone())
            .map_or_else(|_| TrainConfig::default().results_dir, |c| c.results_dir)
    })?;
    let resumed = resume_path.as_deref().map(load_snapshot).transpose()?;
    let base = resumed
        .as_ref()
        .map_or_else(TrainConfig::default, |s| s.config.clone());
    let mut overrides = request.overrides.clone();
    if let Some(seed) = globals.seed {
        overrides.insert("seed".into(), serde_json::json!(seed));
    }
    Ok((TrainConfig::resolve(base, preset, overrides)?, resumed))
}

/// Entry point of `hessian-gan train`.
pub fn run(globals: &Globals, request: &TrainRequest) -> Result<TrainOutcome> {
    let world = WorldInfo::from_env()?;
    launch::check_nproc(request.nproc, world.as_ref().map(|w| w.world))?;
    let parallel = world.is_some() || request.nproc > 1;
    if is_infogan_cr(request)? {
        ensure!(
            !parallel,
            "data-parallel training (--nproc, WORLD_SIZE) is built for the ProGAN trainer; train InfoGAN-CR in one \
             process"
        );
        return run_infogan_cr(globals, request);
    }
    let (mut cfg, resumed) = resolve(globals, request)?;
    let processes = world.as_ref().map_or(request.nproc.max(1), |w| w.world);
    ensure!(
        cfg.num_gpus % processes as i64 == 0,
        "--num-gpus {} does not split between {processes} processes: each rank takes num_gpus/processes of the \
         minibatch's chunks, so use a multiple of {processes}",
        cfg.num_gpus
    );
    if world.is_none() && request.nproc > 1 && !request.dry_run {
        return launch_workers(request, &cfg);
    }
    let device = rank_device(globals.device.resolve()?, world.as_ref())?;
    if request.dry_run {
        return Ok(TrainOutcome::DryRun {
            config: serde_json::to_string_pretty(&cfg)?,
            networks: networks::summary(&cfg.net())?,
            schedule: schedule_table(&cfg.schedule()),
        });
    }

    // A data-parallel rank joins its job first: rank 0 fetches the dataset (if it must) before the others look.
    let group = match &world {
        Some(info) => Some(ProcessGroup::join(
            info,
            Backend::for_device(device),
            request.dist_timeout,
        )?),
        None => None,
    };
    let locate_dataset =
        || locate::locate(&cfg.dataset, &cfg.datasets_dir, globals.base_url.as_deref());
    let dataset_dir = match &group {
        Some(g) if g.rank > 0 => {
            g.share_from_writer("dataset located", b"")?;
            locate_dataset()?
        }
        Some(g) => {
            let dir = locate_dataset()?;
            g.share_from_writer("dataset located", b"")?;
            dir
        }
        None => locate_dataset()?,
    };
    let dataset = Arc::new(Dataset::open(&dataset_dir)?);
    let meta = dataset.meta();
    ensure!(
        meta.resolution as i64 >= cfg.resolution,
        "dataset {} has resolution {}, below --resolution {}",
        dataset_dir.display(),
        meta.resolution,
        cfg.resolution
    );
    // The networks take the dataset's channels (3 RGB, 1 grey such as dSprites); a resumed snapshot keeps its own.
    if let Some(snap) = &resumed {
        ensure!(
            meta.channels as i64 == snap.config.num_channels,
            "dataset {} has {} channel(s) but {} was trained on {}: resume on its dataset",
            dataset_dir.display(),
            meta.channels,
            snap.path.display(),
            snap.config.num_channels
        );
    }
    cfg.num_channels = meta.channels as i64;
    let run_dir = match &group {
        // Rank 0 creates the run directory; the others learn its path from it.
        Some(g) => {
            let mine = if g.rank == 0 {
                new_run_dir(&cfg.results_dir, &cfg.run_description(), &cfg)?
                    .display()
                    .to_string()
            } else {
                String::new()
            };
            let path = g.share_from_writer("run_dir", mine.as_bytes())?;
            PathBuf::from(String::from_utf8_lossy(&path).into_owned())
        }
        None => new_run_dir(&cfg.results_dir, &cfg.run_description(), &cfg)?,
    };
    let mut trainer = Trainer::new_in_group(cfg, device, dataset, run_dir.clone(), resumed, group)?;
    trainer.train()?;
    Ok(TrainOutcome::Trained { run_dir })
}

/// The device of this process: with CUDA, rank r of a node takes GPU `LOCAL_RANK`.
pub(crate) fn rank_device(device: tch::Device, world: Option<&WorldInfo>) -> Result<tch::Device> {
    let (Some(info), tch::Device::Cuda(_)) = (world, device) else {
        return Ok(device);
    };
    let count = tch::Cuda::device_count() as usize;
    ensure!(
        info.local_rank < count,
        "rank {} has LOCAL_RANK {} but this node has {count} CUDA device(s): start at most {count} workers per \
         node",
        info.rank,
        info.local_rank
    );
    crate::core::distributed::set_cuda_device(info.local_rank)?;
    Ok(tch::Device::Cuda(info.local_rank))
}

/// `--nproc N` in the parent: N workers of this same command (`commands::launch`), then the run they wrote; a
/// failed worker fails the job with its rank and the command that resumes the run.
fn launch_workers(request: &TrainRequest, cfg: &TrainConfig) -> Result<TrainOutcome> {
    let start = std::time::SystemTime::now();
    let outcome = launch::run_workers(request.nproc, request.master_port, &launch::own_args());
    let run_dir = launch::run_dir_since(&cfg.results_dir, start);
    match outcome {
        Ok(()) => Ok(TrainOutcome::Trained {
            run_dir: run_dir.context("the workers finished but wrote no run directory")?,
        }),
        Err(failure) => {
            let resume = run_dir.as_deref().and_then(|dir| {
                let snapshot = crate::checkpoint::snapshots_in(dir).ok()?.pop()?;
                Some(format!(
                    "hessian-gan train --resume {} --nproc {}",
                    snapshot.display(),
                    request.nproc
                ))
            });
            Err(launch::failure_error(request.nproc, &failure, resume))
        }
    }
}

/// A fresh run directory `results/NNNNN-<description>` holding `config.json`. Runs killed while writing leave
/// temporaries (`.<name>.partial-<pid>`) in their run directories: their space is reclaimed first (snapshot listings
/// ignore them anyway).
fn new_run_dir(
    results_dir: &std::path::Path,
    description: &str,
    cfg: &impl serde::Serialize,
) -> Result<PathBuf> {
    if let Ok(runs) = std::fs::read_dir(results_dir) {
        let n: usize = runs
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| fs::remove_dead_temporaries(&e.path(), None))
            .sum();
        if n > 0 {
            log::info!(
                "removed {n} temporary file(s) of interrupted writes under {}",
                results_dir.display()
            );
        }
    }
    let run_dir = next_run_dir(results_dir, description)?;
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    fs::write_bytes_atomic(
        &run_dir.join("config.json"),
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )?;
    Ok(run_dir)
}

/// `train` for InfoGAN-CR: the same resolution order and run directory conventions as ProGAN's.
fn run_infogan_cr(globals: &Globals, request: &TrainRequest) -> Result<TrainOutcome> {
    let preset = request.config.as_deref();
    let mut overrides = request.overrides.clone();
    if let Some(seed) = globals.seed {
        overrides.insert("seed".into(), serde_json::json!(seed));
    }
    let resume_path = resume_path(request, || {
        CrConfig::resolve(CrConfig::default(), preset, overrides.clone())
            .map_or_else(|_| CrConfig::default().results_dir, |c| c.results_dir)
    })?;
    let resumed = resume_path
        .as_deref()
        .map(infogan_cr::load_snapshot)
        .transpose()?;
    let base = resumed
        .as_ref()
        .map_or_else(CrConfig::default, |s| s.config.clone());
    let mut cfg = CrConfig::resolve(base, preset, overrides)?;
    if request.dry_run {
        let (g, d, h) = parameter_counts(&cfg.net());
        let mut schedule = String::from("schedule (iteration → cr_coe, gap):\n");
        schedule.push_str(&format!(
            "  {:>9}  cr_coe {}  gap {}\n",
            0,
            cfg.schedule().cr_coe(0),
            cfg.schedule().gap(0)
        ));
        for e in cfg.schedule().events(cfg.iterations) {
            schedule.push_str(&format!(
                "  {:>9}  cr_coe {}  gap {}  ({})\n",
                e.iteration, e.cr_coe, e.gap, e.what
            ));
        }
        return Ok(TrainOutcome::DryRun {
            config: serde_json::to_string_pretty(&cfg)?,
            networks: format!(
                "InfoGAN-CR at {}²: G {g} parameters, D/Q {d}, H {h}\n",
                cfg.resolution
            ),
            schedule,
        });
    }
    let dataset_dir = locate::locate(&cfg.dataset, &cfg.datasets_dir, globals.base_url.as_deref())?;
    let dataset = Arc::new(Dataset::open(&dataset_dir)?);
    let meta = dataset.meta();
    dataset.level(cfg.resolution.trailing_zeros()).with_context(|| {
        format!(
            "dataset {} has no {}² level; rebuild it with --resolution {} or train at its resolution",
            dataset_dir.display(),
            cfg.resolution,
            cfg.resolution
        )
    })?;
    if let Some(snap) = &resumed {
        ensure!(
            meta.channels as i64 == snap.config.channels,
            "dataset {} has {} channel(s) but {} was trained on {}: resume on its dataset",
            dataset_dir.display(),
            meta.channels,
            snap.path.display(),
            snap.config.channels
        );
    }
    cfg.channels = meta.channels as i64;
    cfg.validate()?;
    let device = globals.device.resolve()?;
    let run_dir = new_run_dir(&cfg.results_dir, &cfg.description(), &cfg)?;
    let mut trainer = CrTrainer::new(cfg, device, dataset, run_dir.clone(), resumed)?;
    trainer.train()?;
    Ok(TrainOutcome::Trained { run_dir })
}

/// The schedule at the start, the middle of the transition and the end of every phase: kimg → lod, data
/// resolution, total minibatch and per-chunk minibatch.
pub fn schedule_table(s: &ScheduleConfig) -> String {
    let mut out =
        String::from("schedule (kimg → lod, data resolution, total minibatch, per-chunk):\n");
    let phase = s.lod_training_kimg + s.lod_transition_kimg;
    let points = (0..=s.max_lod() as i64).flat_map(|p| {
        let start = p as f64 * phase;
        [
            start,
            start + s.lod_training_kimg + s.lod_transition_kimg / 2.0,
        ]
    });
    for kimg in points {
        let p = s.at((kimg * 1000.0) as u64);
        out.push_str(&format!(
            "  {kimg:>8.0}  lod {:>4.2}  {:>4}²  batch {:>5}  ({} × {})\n",
            p.lod,
            p.resolution,
            p.minibatch,
            s.num_gpus,
            p.minibatch / s.num_gpus
        ));
    }
    out
}
