//! `hessian-gan discover --models M --ndirs K`: learns interpretable directions in a frozen generator with the
//! Hessian Penalty (docs/spec/progan_hp.md §11), then compares them with baseline direction sets (`compare.rs`).
//!
//! Each iteration: base latents z ~ N(0, I) (and classes for BigGAN), one random direction per sample at a
//! distance from U[−η, η], the penalty of the output image with respect to the coefficients w
//! (`core::discover::discovery_loss`), an Adam step on A alone, Gram–Schmidt. Every `--save-every` iterations
//! `A_<iter>.npy` (the directions, one per row, in the search space's coordinates), `A_<iter>.json` (what they are)
//! and `state_<iter>.safetensors` (A and Adam's moments, for an exact resume) are written atomically.
//!
//! Where we differ from the reference: Adam is the project's (TF's form, ε outside the bias correction; the
//! difference is in ε's scale only), the penalty skips the centre pass (it cancels exactly in the variance), and the
//! random draws of iteration i are seeded by (seed, i), so a resumed run continues bit for bit.

pub mod compare;

use crate::checkpoint::frozen::{ClassChoice, FrozenGenerator};
use crate::checkpoint::reference::Resolver;
use crate::checkpoint::rundir::next_run_dir;
use crate::commands::Globals;
use crate::core::discover::{
    discovery_penalty, init_directions, DirectionInit, Discovery, SearchSpace,
};
use crate::core::traversal;
use crate::io::tensorboard::EventWriter;
use crate::io::{fs, progress, safetensors};
use crate::training::report::{install_ctrlc, stop_request, TickStats};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Settings of `discover` (the command line: `cli::discover::DiscoverArgs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscoverOptions {
    /// A snapshot, run directory, results run number or pretrained name; or a BigGAN `G_ema.pth`.
    pub model: String,
    pub snapshot_kimg: String,
    pub results_dir: PathBuf,
    pub pretrained_dir: PathBuf,
    /// Where discovery runs are made (`<out>/<NNNNN>-discover-…`).
    pub out: PathBuf,
    /// Continue the discovery run in this directory from its newest state.
    pub resume: Option<PathBuf>,
    /// Directions; default: every component of the search space.
    pub ndirs: Option<i64>,
    pub search_space: SearchSpace,
    pub init: DirectionInit,
    /// Keep A as it is (no Gram–Schmidt).
    pub no_ortho: bool,
    /// η: coefficients are drawn from U[−η, η].
    pub path_size: f64,
    pub lr: f64,
    pub batch: i64,
    pub iters: u64,
    /// BigGAN's class: fixed, or random per sample.
    pub class: ClassChoice,
    pub save_every: u64,
    pub log_every: u64,
    /// Traversal GIFs of the directions in TensorBoard every `vis_every` iterations.
    pub vis_during_training: bool,
    pub vis_every: u64,
    /// Compare with the baselines at the end (needs nothing more for pictures; scores need a dataset with
    /// factors).
    pub compare: compare::CompareOptions,
    pub skip_compare: bool,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        // The reference's scripts (docs/spec/progan_hp.md §11): lr 0.01, η 5, batch 96, save every 1000 or 10000.
        DiscoverOptions {
            model: String::new(),
            snapshot_kimg: "latest".into(),
            results_dir: "results".into(),
            pretrained_dir: crate::checkpoint::reference::PRETRAINED_DIR.into(),
            out: "results/discover".into(),
            resume: None,
            ndirs: None,
            search_space: SearchSpace::All,
            init: DirectionInit::Random,
            no_ortho: false,
            path_size: 5.0,
            lr: 0.01,
            batch: 96,
            iters: 50_000,
            class: ClassChoice::Fixed(207),
            save_every: 1000,
            log_every: 100,
            vis_during_training: false,
            vis_every: 1000,
            compare: compare::CompareOptions::default(),
            skip_compare: false,
        }
    }
}

/// What a discovery run wrote.
#[derive(Clone, Debug, Serialize)]
pub struct DiscoverReport {
    pub run_dir: PathBuf,
    pub model: PathBuf,
    pub iterations: u64,
    /// The mean penalty over the last logging window.
    pub final_penalty: f64,
    pub directions: PathBuf,
    pub seconds: f64,
    pub comparison: Option<compare::Comparison>,
}

/// `A_<iter>.json`: what a saved A is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirectionsMeta {
    pub iteration: u64,
    pub model: PathBuf,
    pub nz: i64,
    pub ndirs: i64,
    pub search_space: SearchSpace,
    /// The z components A's columns are (the rows are zero elsewhere).
    pub components: [i64; 2],
    pub orthonormal: bool,
    pub path_size: f64,
    pub seed: u64,
    pub penalty: f64,
}

/// The file names of iteration `it`.
fn a_name(it: u64) -> String {
    format!("A_{it:06}.npy")
}

/// Entry point of `hessian-gan discover`.
pub fn run(globals: &Globals, opts: &DiscoverOptions) -> Result<DiscoverReport> {
    let mut resolver = globals.resolver(&opts.results_dir);
    resolver.pretrained_dir = opts.pretrained_dir.clone();
    run_with(globals, &resolver, opts)
}

/// The model a discovery run uses: `.pth` files directly, everything else through the resolver.
fn model_path(resolver: &Resolver, model: &str, kimg: &str) -> Result<PathBuf> {
    let p = Path::new(model);
    if crate::checkpoint::frozen::is_pytorch_checkpoint(p) {
        ensure!(
            p.is_file(),
            "{model}: no such file; BigGAN's G_ema.pth must be downloaded by hand (pretrained_models/README.md)"
        );
        return Ok(p.to_path_buf());
    }
    Ok(resolver.resolve(model, kimg)?.path)
}

/// [`run`] with a given resolver.
pub fn run_with(
    globals: &Globals,
    resolver: &Resolver,
    opts: &DiscoverOptions,
) -> Result<DiscoverReport> {
    // A resumed run takes its settings from its own record; only the length may change.
    // A resumed run also keeps its seed and the model file it resolved to.
    let (opts, run_dir, recorded_seed) = match &opts.resume {
        Some(dir) => {
            let bytes = std::fs::read(dir.join("discover.json")).with_context(|| {
                format!(
                    "--resume {}: no discover.json there; give a directory made by discover",
                    dir.display()
                )
            })?;
            let unreadable = || format!("{}: unreadable discover.json", dir.display());
            let record: serde_json::Value =
                serde_json::from_slice(&bytes).with_context(unreadable)?;
            let recorded: DiscoverOptions =
                serde_json::from_value(record.clone()).with_context(unreadable)?;
            let opts = DiscoverOptions {
                model: record["model_path"]
                    .as_str()
                    .map_or(recorded.model.clone(), String::from),
                iters: opts.iters,
                resume: opts.resume.clone(),
                skip_compare: opts.skip_compare,
                compare: opts.compare.clone(),
                ..recorded
            };
            (opts, dir.clone(), record["seed"].as_u64())
        }
        None => (opts.clone(), PathBuf::new(), None),
    };
    validate(&opts)?;
    let device = globals.device.resolve()?;
    let seed = recorded_seed.unwrap_or(globals.seed.unwrap_or(0));
    let path = model_path(resolver, &opts.model, &opts.snapshot_kimg)?;
    let g = FrozenGenerator::load(&path, opts.class, device)
        .with_context(|| format!("cannot load model {}", opts.model))?;
    let nz = g.nz();
    let space = opts.search_space.range(nz)?;
    let dim = space.end - space.start;
    let ndirs = opts.ndirs.unwrap_or(dim);
    ensure!(
        ndirs >= 1 && ndirs <= dim,
        "--ndirs {ndirs}: the {} search space of {} has {dim} components",
        opts.search_space.name(),
        opts.model
    );
    let run_dir = if opts.resume.is_some() {
        run_dir
    } else {
        let desc = format!(
            "discover-{}-{}-{}",
            crate::checkpoint::reference::describe(&path)
                .name
                .replace(['/', '\\', ' '], "_"),
            opts.search_space.name(),
            ndirs
        );
        let dir = next_run_dir(&opts.out, &desc)?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut record = serde_json::to_value(&opts)?;
        record["seed"] = serde_json::json!(seed);
        record["model_path"] = serde_json::json!(path);
        fs::write_bytes_atomic(
            &dir.join("discover.json"),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )?;
        dir
    };
    install_ctrlc();
    let started = std::time::Instant::now();

    let mut disc = Discovery::new(
        &Tensor::zeros([ndirs, dim], (Kind::Float, Device::Cpu)),
        space.clone(),
        nz,
        opts.lr,
        opts.path_size,
        !opts.no_ortho,
        device,
    )?;
    let mut start = 0u64;
    let mut resumed_penalty = f64::NAN;
    match newest_state(&run_dir)? {
        Some((it, file)) => {
            let (tensors, _) = safetensors::load(&file)?;
            let get = |name: &str| -> Result<Tensor> {
                tensors
                    .get(name)
                    .map(|t| t.to_device(device))
                    .with_context(|| format!("{}: no tensor {name}", file.display()))
            };
            tch::no_grad(|| -> Result<()> {
                disc.params
                    .flat
                    .shallow_clone()
                    .copy_(&get("A")?.reshape([-1]));
                disc.adam.m.copy_(&get("adam_m")?);
                disc.adam.v.copy_(&get("adam_v")?);
                disc.adam.step.copy_(&get("adam_step")?.reshape([]));
                Ok(())
            })?;
            log::info!("resumed {} from iteration {it}", run_dir.display());
            start = it;
            // The penalty logged with that state, reported if no iteration is left to run.
            resumed_penalty = std::fs::read(run_dir.join(format!("A_{it:06}.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<DirectionsMeta>(&b).ok())
                .map_or(f64::NAN, |m| m.penalty);
        }
        None => {
            tch::manual_seed(seed as i64);
            let a0 = init_directions(opts.init, ndirs, dim, !opts.no_ortho)?;
            tch::no_grad(|| disc.a.shallow_clone().copy_(&a0.to_device(device)));
            save_state(&run_dir, 0, &disc, &opts, &path, seed, f64::NAN)?;
        }
    }

    let mut events = EventWriter::create(&run_dir)?;
    let mut stats = TickStats::default();
    let mut last_penalty = resumed_penalty;
    let bar = progress::bar(Some(opts.iters), "discovering");
    bar.set_position(start);
    let forward = |z: &Tensor, classes: &Tensor| g.forward(z, classes);
    let mut it = start;
    while it < opts.iters {
        // Iteration i's draws depend on (seed, i) only: an exact resume.
        tch::manual_seed(
            (seed as i64)
                .wrapping_mul(1_000_003)
                .wrapping_add(it as i64),
        );
        let z = Tensor::randn([opts.batch, nz], (Kind::Float, device));
        let classes = g.classes(opts.batch);
        // The conditional G sees each sample's class in all 2k perturbed copies.
        let reps = classes.repeat([2 * discovery_penalty().k as i64]);
        let gen = |x: &Tensor| forward(x, &reps);
        let loss = disc.step(&gen, &z)?;
        stats.add("Metrics/hessian_penalty", &loss);
        stats.add(
            "Metrics/direction_norm",
            &disc.a.detach().square().mean(Kind::Float).sqrt(),
        );
        it += 1;
        bar.inc(1);
        if it.is_multiple_of(opts.log_every) || it == opts.iters {
            let values = stats.take();
            last_penalty = values
                .iter()
                .find(|(k, _)| k == "Metrics/hessian_penalty")
                .map_or(f64::NAN, |v| v.1);
            ensure!(
                last_penalty.is_finite(),
                "the penalty became {last_penalty} at iteration {it}; lower --lr or --path-size"
            );
            events.scalars(it as i64, &values)?;
            bar.set_message(format!("HP {last_penalty:.4}"));
            log::info!("it {it}/{} | HP {last_penalty:.5}", opts.iters);
        }
        if opts.vis_during_training && it.is_multiple_of(opts.vis_every) {
            log_traversals(
                &g,
                &disc.directions(),
                opts.path_size,
                it,
                &run_dir,
                &mut events,
            )?;
        }
        let stop = stop_request(&run_dir);
        if it.is_multiple_of(opts.save_every) || it == opts.iters || stop.is_some() {
            save_state(&run_dir, it, &disc, &opts, &path, seed, last_penalty)?;
            events.flush()?;
        }
        if let Some(why) = stop {
            bar.finish_and_clear();
            bail!(
                "{why}: stopped at iteration {it}; continue with --resume {}",
                run_dir.display()
            );
        }
    }
    bar.finish_and_clear();
    events.flush()?;
    let directions = run_dir.join("directions.npy");
    let found = disc.directions().detach();
    crate::core::latents::write_npy(&found, &directions)?;
    let comparison = if opts.skip_compare {
        None
    } else {
        Some(compare::run(
            globals,
            &g,
            &found,
            &run_dir.join("compare"),
            &opts,
            seed,
        )?)
    };
    Ok(DiscoverReport {
        run_dir,
        model: path,
        iterations: it,
        final_penalty: last_penalty,
        directions,
        seconds: started.elapsed().as_secs_f64(),
        comparison,
    })
}

fn validate(opts: &DiscoverOptions) -> Result<()> {
    ensure!(
        !opts.model.is_empty(),
        "--models: give the generator to discover directions in"
    );
    ensure!(
        opts.path_size.is_finite() && opts.path_size > 0.0,
        "--path-size {} must be a positive number",
        opts.path_size
    );
    ensure!(
        opts.lr.is_finite() && opts.lr > 0.0,
        "--lr {} must be a positive number",
        opts.lr
    );
    ensure!(opts.batch >= 1, "--batch must be at least 1");
    ensure!(opts.iters >= 1, "--iters must be at least 1");
    ensure!(
        opts.save_every >= 1 && opts.log_every >= 1 && opts.vis_every >= 1,
        "--save-every, --log-every and --vis-every must be at least 1"
    );
    Ok(())
}

/// The newest `state_<iter>.safetensors` of a run that verifies, with its iteration.
fn newest_state(dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    if dir.as_os_str().is_empty() || !dir.is_dir() {
        return Ok(None);
    }
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let it = name
                .strip_prefix("state_")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((it, e.path()))
        })
        .collect();
    found.sort();
    while let Some((it, p)) = found.pop() {
        match safetensors::verify(&p) {
            Ok(()) => return Ok(Some((it, p))),
            Err(e) => log::warn!("{}: {e:#}; trying an older state", p.display()),
        }
    }
    Ok(None)
}

fn save_state(
    dir: &Path,
    it: u64,
    disc: &Discovery,
    opts: &DiscoverOptions,
    model: &Path,
    seed: u64,
    penalty: f64,
) -> Result<()> {
    let (adam, space, nz) = (&disc.adam, &disc.space, disc.nz);
    let a = disc.a.detach().to_device(Device::Cpu);
    crate::core::latents::write_npy(&a, &dir.join(a_name(it)))?;
    let meta = DirectionsMeta {
        iteration: it,
        model: model.to_path_buf(),
        nz,
        ndirs: a.size()[0],
        search_space: opts.search_space,
        components: [space.start, space.end],
        orthonormal: !opts.no_ortho,
        path_size: opts.path_size,
        seed,
        penalty,
    };
    fs::write_bytes_atomic(
        &dir.join(format!("A_{it:06}.json")),
        serde_json::to_string_pretty(&meta)?.as_bytes(),
    )?;
    safetensors::save(
        &dir.join(format!("state_{it:06}.safetensors")),
        &[
            ("A".into(), a),
            ("adam_m".into(), adam.m.shallow_clone()),
            ("adam_v".into(), adam.v.shallow_clone()),
            ("adam_step".into(), adam.step.reshape([1])),
        ],
        HashMap::from([("iteration".to_string(), it.to_string())]),
    )
}

/// Traversal GIFs of the first 8 directions (rows) at 4 base latents (columns), eased centre → −η → +η → centre,
/// into `vis/directions_<iter>.gif` and TensorBoard.
fn log_traversals(
    g: &FrozenGenerator,
    q: &Tensor,
    path_size: f64,
    it: u64,
    run_dir: &Path,
    events: &mut EventWriter,
) -> Result<()> {
    let q = q.detach();
    let nz = g.nz();
    let shown = q.size()[0].min(8);
    let device = g.device();
    tch::manual_seed(7);
    let base = Tensor::randn([4, nz], (Kind::Float, device));
    let classes = g.classes(4);
    let values = compare::eased_path(12);
    let mut frames = Vec::new();
    for &s in &values {
        let mut rows = Vec::new();
        for j in 0..shown {
            let qj = q.get(j).to_device(device);
            let z = compare::walk(&base, &qj, s * path_size);
            rows.push(tch::no_grad(|| g.forward(&z, &classes)));
        }
        frames.push(Tensor::cat(&rows, 0));
    }
    let frames = Tensor::stack(&frames, 0).clamp(-1.0, 1.0);
    let dir = run_dir.join("vis");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("directions_{it:06}.gif"));
    traversal::save_gif(&frames, 4, 24, &path)?;
    let gif = std::fs::read(&path)?;
    let s = frames.size();
    let (h, w) = ((shown * s[3]) as u32, (4 * s[4]) as u32);
    events.image(it as i64, "Traversals/directions", w, h, &gif)
}
