//! Import of the reference's TensorFlow checkpoints (`network-snapshot-*.pkl`, the pretrained models) into our
//! snapshot format (docs/spec/progan_hp.md §1.2, §1.7, §15.8).
//!
//! The pickle is read by [`crate::io::pickle`], which never executes anything. Each of G, D and Gs is a
//! `dnnlib.tflib.network.Network` whose state holds `static_kwargs` (the architecture) and `variables` (TF names,
//! TF layouts, weights unscaled). The architecture becomes a [`TrainConfig`]; every variable is converted by
//! [`tf_weight_to_tch`] (conv `[kh,kw,in,out]` → `[out,in,kh,kw]`, dense `[in,out]` → `[out,in]`, G's fused up-conv
//! kernels rotated by 180°; the dense layers' C-major flattening is the same in both frameworks) and copied into
//! freshly built networks; every variable must be used exactly once and every parameter filled. `lod` is not a
//! parameter here (it is an argument of the forward passes): its value is reported and the snapshot's state is
//! chosen so that our schedule gives the same lod (see [`import_pkl_with`]).

use crate::checkpoint::{save_snapshot, Models, TrainState};
use crate::config::TrainConfig;
use crate::core::device::device_name;
use crate::core::networks::tf_compat::{tf_name_to_tch, tf_weight_to_tch};
use crate::core::networks::{NetConfig, MBSTD_GROUP_SIZE};
use crate::core::optim::FlatParams;
use crate::io::pickle::{self, NdArray, Value};
use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// One `dnnlib.tflib.network.Network` of the pickle (its `__getstate__` dict, docs/spec/progan_hp.md §1.7).
#[derive(Clone, Debug)]
pub struct TfNetwork {
    /// `name` (`G`, `D`, `Gs` in the reference).
    pub name: String,
    /// `build_func_name` (`G_paper`, `D_paper`).
    pub build_func_name: String,
    /// `version` (3 in the reference; 2 is accepted as dnnlib does).
    pub version: i64,
    /// `static_kwargs`, in file order.
    pub static_kwargs: Vec<(String, Value)>,
    /// `variables`: (local TF name, array), in file order.
    pub variables: Vec<(String, NdArray)>,
}

impl TfNetwork {
    fn kwarg(&self, key: &str) -> Option<&Value> {
        self.static_kwargs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn variable(&self, name: &str) -> Option<&NdArray> {
        self.variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }
}

/// The reference's checkpoint: `(G, D, Gs)`.
#[derive(Clone, Debug)]
pub struct ReferencePkl {
    pub g: TfNetwork,
    pub d: TfNetwork,
    pub gs: TfNetwork,
    /// Pickle protocol of the file.
    pub protocol: u8,
}

/// Reads a reference checkpoint without converting anything. Errors name the file.
pub fn read_reference_pkl(path: &Path) -> Result<ReferencePkl> {
    let loaded = pickle::load_file(path)?;
    let what = |msg: String| {
        format!(
            "{}: {msg}; expected the reference's network-snapshot pickle, a tuple (G, D, Gs) of \
             dnnlib.tflib.network.Network objects",
            path.display()
        )
    };
    let items = loaded
        .value
        .as_seq()
        .filter(|s| s.len() == 3)
        .with_context(|| what(format!("the pickle holds a {}", loaded.value.type_name())))?;
    let mut nets = Vec::with_capacity(3);
    for (role, item) in ["G", "D", "Gs"].iter().zip(&items) {
        nets.push(
            network_from_value(role, item).map_err(|e| anyhow::anyhow!(what(format!("{e:#}"))))?,
        );
    }
    let gs = nets.pop().expect("three");
    let d = nets.pop().expect("three");
    let g = nets.pop().expect("three");
    Ok(ReferencePkl {
        g,
        d,
        gs,
        protocol: loaded.protocol,
    })
}

fn network_from_value(role: &str, v: &Value) -> Result<TfNetwork> {
    let inst = v
        .as_instance()
        .with_context(|| format!("{role} is a {}, not a Network", v.type_name()))?;
    let state = inst
        .state
        .with_context(|| format!("{role} ({}) has no state", inst.class))?;
    let field = |key: &str| {
        state
            .get(key)
            .with_context(|| format!("{role}'s state has no '{key}'"))
    };
    let version = field("version")?
        .as_i64()
        .with_context(|| format!("{role}'s state version is not an integer"))?;
    ensure!(
        version == 2 || version == 3,
        "{role}'s state has version {version}; dnnlib networks are version 2 or 3"
    );
    let name = field("name")?.as_str().unwrap_or_default();
    let build_func_name = state
        .get("build_func_name")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let kwargs = field("static_kwargs")?
        .as_dict()
        .with_context(|| format!("{role}'s static_kwargs is not a dict"))?;
    let static_kwargs = kwargs
        .into_iter()
        .map(|(k, v)| {
            k.as_str()
                .map(|k| (k, v))
                .with_context(|| format!("{role}'s static_kwargs has a non-string key"))
        })
        .collect::<Result<Vec<_>>>()?;
    let vars = field("variables")?
        .as_seq()
        .with_context(|| format!("{role}'s variables is not a list"))?;
    let mut variables = Vec::with_capacity(vars.len());
    for (i, item) in vars.iter().enumerate() {
        let pair = item
            .as_seq()
            .filter(|p| p.len() == 2)
            .with_context(|| format!("{role}'s variable #{i} is not a (name, array) pair"))?;
        let vname = pair[0]
            .as_str()
            .with_context(|| format!("{role}'s variable #{i} has no name"))?;
        let arr = pair[1].as_array().with_context(|| {
            format!(
                "{role}'s variable {vname} is a {}, not a NumPy array",
                pair[1].type_name()
            )
        })?;
        variables.push((vname, arr));
    }
    Ok(TfNetwork {
        name,
        build_func_name,
        version,
        static_kwargs,
        variables,
    })
}

/// What was imported from one network.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkReport {
    /// Position in the tuple: `G`, `D` or `Gs`.
    pub role: String,
    /// The network's own `name` and `build_func_name`.
    pub name: String,
    pub build_func_name: String,
    /// Variables converted (without `lod`).
    pub variables: usize,
    /// Parameters (elements) converted; equals our network's trainable parameter count.
    pub params: i64,
    /// The stored `lod` (None when the network had none).
    pub lod: Option<f64>,
    /// `static_kwargs` as text.
    pub static_kwargs: BTreeMap<String, String>,
}

/// The quick check run on the imported networks.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub device: String,
    /// Gs output for 4 fixed latents at the snapshot's lod: `[N, C, H, W]`.
    pub image_shape: Vec<i64>,
    pub image_min: f64,
    pub image_max: f64,
    pub image_mean: f64,
    pub image_std: f64,
    /// Mean D score of those images.
    pub d_score_mean: f64,
}

/// The result of [`import_pkl`].
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    pub source: PathBuf,
    pub output: PathBuf,
    /// Pickle protocol of the source.
    pub protocol: u8,
    /// The architecture read from static_kwargs (and the variables' shapes where a kwarg was absent).
    pub net: NetConfig,
    /// The snapshot's training configuration (architecture as above; the rest are our defaults: the pickle does not
    /// record the reference's training flags).
    pub config: TrainConfig,
    /// The snapshot's `cur_nimg`.
    pub cur_nimg: u64,
    /// The lod our schedule gives at `cur_nimg` (what `reference::load_gs` uses); equals the stored lod.
    pub lod: f64,
    pub networks: Vec<NetworkReport>,
    pub check: CheckReport,
    /// Choices made on the way (inferred values, ignored kwargs, the schedule adjustment).
    pub notes: Vec<String>,
}

/// Options of [`import_pkl_with`].
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Where the networks are built and the check runs.
    pub device: Device,
    /// The dataset name recorded in the snapshot's config (the pickle does not name it); default `unknown`.
    pub dataset: Option<String>,
    /// The `hp_lambda` recorded in the snapshot's config; default: by [`hp_lambda_of`].
    pub hp_lambda: Option<f64>,
}

/// The Hessian Penalty weight an imported checkpoint was trained with, and why. The pickle does not record it; the
/// reference decides from the path (docs/spec/progan_hp.md §2.6, §2.7): a run directory named
/// `hessian_penalty_<dataset>_…` trained with HP (its `w-<λ>` suffix gives λ), anything else (`progan_…`,
/// `infogan_…`) without. The reference's pretrained names say it too: `_ft` and `_fs` are HP models (λ 0.1),
/// `_info` and `_bl` are not. What is recorded matters: fine-tuning a snapshot recorded with `hp_lambda` 0 ramps
/// the penalty in from 0 at the resume point (§2.6); one recorded with HP gets the full λ at once.
pub fn hp_lambda_of(pkl: &Path) -> (f64, String) {
    let text = pkl.to_string_lossy();
    if let Some(at) = text.rfind("hessian_penalty_") {
        let rest = &text[at..];
        let dir = rest.split(['/', '\\']).next().unwrap_or(rest);
        let lambda = dir
            .rsplit_once("_w-")
            .and_then(|(_, w)| w.parse::<f64>().ok())
            .filter(|w| w.is_finite() && *w > 0.0)
            .unwrap_or(0.1);
        return (
            lambda,
            format!("hp_lambda {lambda}: the path names a Hessian Penalty run ({dir})"),
        );
    }
    let stem = pkl.file_stem().map(|s| s.to_string_lossy().into_owned());
    if let Some(stem) = stem.filter(|s| crate::io::resources::is_pretrained_name(s)) {
        if stem.ends_with("_ft") || stem.ends_with("_fs") {
            return (
                0.1,
                format!("hp_lambda 0.1: {stem} is one of the reference's Hessian Penalty models"),
            );
        }
    }
    (
        0.0,
        "hp_lambda 0: the path does not name a Hessian Penalty run (hessian_penalty_<dataset>_…); fine-tuning \
         it with the penalty ramps in from 0 (pass --hp-lambda to import to record otherwise)"
            .to_string(),
    )
}

/// [`import_pkl_with`] with the dataset left `unknown`.
pub fn import_pkl(pkl: &Path, out: &Path, device_for_check: Device) -> Result<ImportReport> {
    import_pkl_with(
        pkl,
        out,
        &ImportOptions {
            device: device_for_check,
            dataset: None,
            hp_lambda: None,
        },
    )
}

/// Converts the reference checkpoint `pkl` into the snapshot `out` (written atomically by
/// [`save_snapshot`]; optimiser state fresh).
///
/// `cur_nimg` is the file name's kimg (`network-snapshot-012345.pkl` → 12,345,000), else 0. Our snapshots carry no
/// lod: it is recomputed from the schedule at `cur_nimg`. When that does not give the stored lod (a pretrained file
/// without a kimg in its name):
/// * stored lod 0 (fully grown, every pretrained model): `lod_initial_resolution` is set to the final resolution,
///   so the schedule stays at lod 0 (resuming trains the grown network);
/// * otherwise `cur_nimg` becomes the first point where the default schedule reaches the stored lod.
pub fn import_pkl_with(pkl: &Path, out: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let file = pkl.display().to_string();
    let src = read_reference_pkl(pkl)?;
    let mut notes = Vec::new();
    let (net, infogan_lambda) = architecture(&src, &mut notes).with_context(|| file.clone())?;
    let hp_lambda = match opts.hp_lambda {
        Some(l) => {
            ensure!(
                l.is_finite() && l >= 0.0,
                "--hp-lambda {l}: the weight must be a finite number ≥ 0"
            );
            notes.push(format!("hp_lambda {l}: given"));
            l
        }
        None => {
            let (l, why) = hp_lambda_of(pkl);
            notes.push(why);
            l
        }
    };
    let mut cfg = TrainConfig {
        hp_lambda,
        dataset: opts.dataset.clone().unwrap_or_else(|| "unknown".into()),
        resolution: net.resolution,
        nz: net.nz,
        fmap_base: net.fmap_base,
        fmap_max: net.fmap_max,
        infogan_nz: net.infogan_nz,
        infogan_lambda,
        ..TrainConfig::default()
    };
    cfg.validate()
        .with_context(|| format!("{file}: the imported architecture is not usable"))?;
    ensure!(
        cfg.net() == net,
        "{file}: internal error: the training config does not reproduce the architecture"
    );

    let _guard = tch::no_grad_guard();
    let models = Models::new(&cfg, opts.device)?;
    let mut networks = Vec::new();
    for (tf, params, role) in [
        (&src.g, &models.g_params, "G"),
        (&src.d, &models.d_params, "D"),
        (&src.gs, &models.gs_params, "Gs"),
    ] {
        let report = copy_network(role, tf, params).with_context(|| {
            format!(
                "{file}: {role} does not fit a ProGAN of resolution {}, nz {}, fmap_base {}, fmap_max {}, \
                 infogan_nz {}",
                net.resolution, net.nz, net.fmap_base, net.fmap_max, net.infogan_nz
            )
        })?;
        networks.push(report);
    }

    // The lod the networks were saved at: Gs's (what generates), else G's, else D's (docs/spec/progan_hp.md §1.4: all three equal in
    // the reference, Gs copies G's non-trainables every step).
    let lods: Vec<(String, f64)> = networks
        .iter()
        .filter_map(|n| n.lod.map(|l| (n.role.clone(), l)))
        .collect();
    let stored_lod = ["Gs", "G", "D"]
        .iter()
        .find_map(|r| lods.iter().find(|(role, _)| role == r).map(|(_, l)| *l));
    if lods.iter().any(|(_, l)| Some(*l) != stored_lod) {
        notes.push(format!(
            "the networks store different lods ({}); using Gs's",
            lods.iter()
                .map(|(r, l)| format!("{r} {l}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let stored_lod = stored_lod.unwrap_or_else(|| {
        notes.push("no network stores a lod; assuming 0 (fully grown)".into());
        0.0
    });
    ensure!(
        stored_lod.is_finite() && (0.0..=net.max_lod()).contains(&stored_lod),
        "{file}: stored lod {stored_lod} is outside [0, {}] for resolution {}",
        net.max_lod(),
        net.resolution
    );
    let (cur_nimg, lod) = schedule_for(pkl, &mut cfg, stored_lod, &mut notes)?;

    let check = check_networks(&models, &net, lod, opts.device)
        .with_context(|| format!("{file}: the imported networks fail a forward pass"))?;
    let state = TrainState {
        cur_nimg,
        hp_start_kimg: cfg.hp_start_kimg,
        ..TrainState::default()
    };
    save_snapshot(out, &models, &cfg, &state, false)?;
    Ok(ImportReport {
        source: pkl.to_path_buf(),
        output: out.to_path_buf(),
        protocol: src.protocol,
        net,
        config: cfg,
        cur_nimg,
        lod,
        networks,
        check,
        notes,
    })
}

/// kimg from a reference snapshot name `network-snapshot-012345.pkl`.
fn kimg_from_name(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    let digits = stem.strip_prefix("network-snapshot-")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Picks `cur_nimg` (and, for a grown network, the schedule's start) so that our schedule reproduces the stored
/// lod; returns `(cur_nimg, lod at cur_nimg)`.
fn schedule_for(
    pkl: &Path,
    cfg: &mut TrainConfig,
    stored: f64,
    notes: &mut Vec<String>,
) -> Result<(u64, f64)> {
    let kimg = kimg_from_name(pkl);
    let mut cur_nimg = kimg.map_or(0, |k| k * 1000);
    let sched = cfg.schedule();
    // The reference names snapshots by whole kimg (cur_nimg // 1000); during a transition the lod moves by
    // 1/lod_transition_kimg per kimg, so allow that much.
    let tol = 1e-6
        + if cfg.lod_transition_kimg > 0.0 {
            1.0 / cfg.lod_transition_kimg
        } else {
            0.0
        };
    let at = sched.at(cur_nimg).lod;
    if (at - stored).abs() <= tol {
        return Ok((cur_nimg, at));
    }
    let from = match kimg {
        Some(k) => format!("at {k} kimg (from the file name)"),
        None => "at 0 kimg (no kimg in the file name)".to_string(),
    };
    if stored == 0.0 {
        cfg.lod_initial_resolution = cfg.resolution;
        notes.push(format!(
            "stored lod 0 but the default schedule gives lod {at} {from}: set lod_initial_resolution = {} so the \
             snapshot stays fully grown",
            cfg.resolution
        ));
    } else {
        // Invert the schedule (docs/spec/progan_hp.md §2.2): lod = max − phase − clamp((pk − T)/X, 0, 1) with phase length T + X.
        let (t, x) = (cfg.lod_training_kimg, cfg.lod_transition_kimg);
        let max = sched.max_lod();
        let ceil = stored.ceil();
        let phase = max - ceil;
        let k = if stored == ceil || x == 0.0 {
            phase * (t + x)
        } else {
            phase * (t + x) + t + (ceil - stored) * x
        };
        ensure!(
            phase >= 0.0,
            "{}: stored lod {stored} exceeds the schedule's largest lod {max}",
            pkl.display()
        );
        cur_nimg = (k * 1000.0).round() as u64;
        notes.push(format!(
            "stored lod {stored} but the default schedule gives lod {at} {from}: cur_nimg set to {cur_nimg}, \
             where the schedule reaches lod {stored}"
        ));
    }
    let lod = cfg.schedule().at(cur_nimg).lod;
    ensure!(
        (lod - stored).abs() <= 1e-4,
        "{}: internal error: the schedule gives lod {lod} at {cur_nimg} images, not the stored {stored}",
        pkl.display()
    );
    Ok((cur_nimg, lod))
}

/// Integer kwarg.
fn int_kwarg(net: &TfNetwork, key: &str) -> Result<Option<i64>> {
    match net.kwarg(key) {
        None | Some(Value::None) => Ok(None),
        Some(v) => v.as_i64().map(Some).with_context(|| {
            format!(
                "{}'s static_kwargs {key} = {} is not an integer",
                net.name,
                v.render()
            )
        }),
    }
}

/// Static kwargs that change the networks in ways we do not implement: each must be absent or equal the paper's
/// value (docs/spec/progan_hp.md §1.1).
const FIXED_KWARGS: [(&str, f64); 9] = [
    ("label_size", 0.0),
    ("fmap_decay", 1.0),
    ("use_wscale", 1.0),
    ("use_pixelnorm", 1.0),
    ("use_leakyrelu", 1.0),
    ("normalize_latents", 1.0),
    ("fused_scale", 1.0),
    ("pixelnorm_epsilon", 1e-8),
    ("mbstd_group_size", MBSTD_GROUP_SIZE as f64),
];
/// Kwargs that define the architecture (read below) or do not change the computation.
const KNOWN_KWARGS: [&str; 11] = [
    "resolution",
    "num_channels",
    "latent_size",
    "fmap_base",
    "fmap_max",
    "infogan_nz",
    "infogan_lambda",
    "mbstd_num_features",
    "dtype",
    "structure",
    "is_template_graph",
];

/// The architecture from static_kwargs, falling back to the variables' shapes, and the InfoGAN weight.
fn architecture(src: &ReferencePkl, notes: &mut Vec<String>) -> Result<(NetConfig, f64)> {
    let (g, d) = (&src.g, &src.d);
    for net in [g, d, &src.gs] {
        for (key, want) in FIXED_KWARGS {
            if let Some(v) = net.kwarg(key) {
                let got = v.as_f64();
                let ok = got.is_some_and(|x| (x - want).abs() <= 1e-12 * want.abs().max(1.0));
                ensure!(
                    ok,
                    "{}'s static_kwargs {key} = {} is not supported (hessian-gan implements the paper's ProGAN \
                     with {key} = {want})",
                    net.name,
                    v.render()
                );
            }
        }
        if let Some(v) = net.kwarg("mbstd_num_features") {
            ensure!(
                v.as_i64() == Some(1),
                "{}'s static_kwargs mbstd_num_features = {} is not supported (only 1)",
                net.name,
                v.render()
            );
        }
        for (key, v) in &net.static_kwargs {
            if !KNOWN_KWARGS.contains(&key.as_str()) && !FIXED_KWARGS.iter().any(|(k, _)| k == key)
            {
                notes.push(format!(
                    "{}: ignored static_kwargs {key} = {}",
                    net.name,
                    v.render()
                ));
            }
        }
    }

    // Resolution: kwargs (G, D must agree), else from the ToRGB layers (ToRGB_lod0 … ToRGB_lod{R−2}).
    let res_g = int_kwarg(g, "resolution")?;
    let res_d = int_kwarg(d, "resolution")?;
    let resolution = match (res_g, res_d) {
        (Some(a), Some(b)) => {
            ensure!(
                a == b,
                "G has resolution {a} but D has {b} in static_kwargs"
            );
            a
        }
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => {
            let max_k = g
                .variables
                .iter()
                .filter_map(|(n, _)| {
                    n.strip_prefix("ToRGB_lod")?
                        .split('/')
                        .next()?
                        .parse::<i64>()
                        .ok()
                })
                .max()
                .context("no resolution in static_kwargs and no ToRGB layers in G")?;
            notes.push("resolution inferred from G's ToRGB layers".into());
            1 << (max_k + 2)
        }
    };

    for net in [g, d, &src.gs] {
        if let Some(c) = int_kwarg(net, "num_channels")? {
            ensure!(
                c == 3,
                "{}'s static_kwargs num_channels = {c} is not supported: hessian-gan's networks are RGB \
                 (3 channels)",
                net.name
            );
        }
    }

    let nz = match int_kwarg(g, "latent_size")? {
        Some(n) => n,
        None => {
            let w = g.variable("4x4/Dense/weight").context(
                "no latent_size in G's static_kwargs and no 4x4/Dense/weight to infer it from",
            )?;
            ensure!(
                w.shape.len() == 2,
                "G's 4x4/Dense/weight has shape {:?}, expected [latent_size, features]",
                w.shape
            );
            notes.push(format!(
                "latent_size {} inferred from G's 4x4/Dense/weight",
                w.shape[0]
            ));
            w.shape[0] as i64
        }
    };

    let defaults = NetConfig::default();
    let fmap = |key: &str, default: i64| -> Result<i64> {
        let a = int_kwarg(g, key)?;
        let b = int_kwarg(d, key)?;
        if let (Some(a), Some(b)) = (a, b) {
            ensure!(a == b, "G has {key} {a} but D has {b} in static_kwargs");
        }
        Ok(a.or(b).unwrap_or(default))
    };
    let fmap_base = fmap("fmap_base", defaults.fmap_base)?;
    let fmap_max = fmap("fmap_max", defaults.fmap_max)?;

    let infogan_nz = match int_kwarg(d, "infogan_nz")? {
        Some(k) => k,
        None => match d.variable("4x4/Q_Encoder/Dense1/weight") {
            Some(w) if w.shape.len() == 2 => {
                notes.push(format!(
                    "infogan_nz {} inferred from D's Q head",
                    w.shape[1]
                ));
                w.shape[1] as i64
            }
            _ => 0,
        },
    };
    let lambda_of = |net: &TfNetwork| {
        net.kwarg("infogan_lambda")
            .and_then(Value::as_f64)
            .filter(|l| *l > 0.0)
    };
    let infogan_lambda = if infogan_nz > 0 {
        lambda_of(d).or_else(|| lambda_of(g)).unwrap_or_else(|| {
            notes.push(
                "infogan_lambda not recorded; set to 1.0 (every reference InfoGAN script uses 1.0)"
                    .into(),
            );
            1.0
        })
    } else {
        0.0
    };

    // Gs must be a clone of G's architecture.
    for key in [
        "resolution",
        "latent_size",
        "fmap_base",
        "fmap_max",
        "num_channels",
    ] {
        let (a, b) = (int_kwarg(g, key)?, int_kwarg(&src.gs, key)?);
        ensure!(
            a == b,
            "Gs's static_kwargs {key} ({b:?}) differs from G's ({a:?}); Gs must be a clone of G"
        );
    }

    let net = NetConfig {
        resolution,
        nz,
        num_channels: 3,
        fmap_base,
        fmap_max,
        infogan_nz,
    };
    net.validate()?;
    Ok((net, infogan_lambda))
}

/// At most `n` names, then "… and K more".
fn list(names: &[String], n: usize) -> String {
    let mut s = names.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > n {
        s.push_str(&format!(" … and {} more", names.len() - n));
    }
    s
}

/// Converts and copies every variable of `tf` into `params` (our network's parameters, by VarStore name); every
/// variable used once, every parameter filled, else one error listing what does not match.
fn copy_network(role: &str, tf: &TfNetwork, params: &FlatParams) -> Result<NetworkReport> {
    let index: HashMap<&str, usize> = params
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut filled = vec![false; params.names.len()];
    let (mut unexpected, mut duplicated, mut mismatched) = (Vec::new(), Vec::new(), Vec::new());
    let mut lod = None;
    let mut numel = 0i64;
    for (name, arr) in &tf.variables {
        if name == "lod" {
            // docs/spec/progan_hp.md §1.4: a non-trainable scalar that the schedule assigns; an argument of our forward passes.
            ensure!(lod.is_none(), "{role} has two variables named lod");
            ensure!(
                arr.numel() == 1,
                "{role}'s lod has shape {:?}, expected a scalar",
                arr.shape
            );
            lod = Some(arr.to_f32().with_context(|| format!("{role}'s lod"))?[0] as f64);
            continue;
        }
        let ours = tf_name_to_tch(name);
        let Some(&i) = index.get(ours.as_str()) else {
            unexpected.push(format!("{name} {:?}", arr.shape));
            continue;
        };
        if filled[i] {
            duplicated.push(name.clone());
            continue;
        }
        let values = arr
            .to_f32()
            .with_context(|| format!("{role}'s variable {name}"))?;
        let shape: Vec<i64> = arr.shape.iter().map(|&d| d as i64).collect();
        let t = Tensor::from_slice(&values).reshape(shape.as_slice());
        let t = tf_weight_to_tch(name, &t).with_context(|| format!("{role}'s variable {name}"))?;
        let var = &params.params[i];
        if t.size() != var.size() {
            mismatched.push(format!(
                "{name} (TF {:?} → {:?}, expected {:?})",
                arr.shape,
                t.size(),
                var.size()
            ));
            continue;
        }
        var.detach().copy_(&t.to_device(var.device()));
        filled[i] = true;
        numel += t.numel() as i64;
    }
    let missing: Vec<String> = params
        .names
        .iter()
        .zip(&filled)
        .filter(|(_, &f)| !f)
        .map(|(n, _)| n.replace('.', "/"))
        .collect();
    if !(unexpected.is_empty()
        && duplicated.is_empty()
        && mismatched.is_empty()
        && missing.is_empty())
    {
        let mut parts = Vec::new();
        if !unexpected.is_empty() {
            parts.push(format!("unexpected variables: {}", list(&unexpected, 8)));
        }
        if !missing.is_empty() {
            parts.push(format!("missing variables: {}", list(&missing, 8)));
        }
        if !mismatched.is_empty() {
            parts.push(format!("wrong shapes: {}", list(&mismatched, 4)));
        }
        if !duplicated.is_empty() {
            parts.push(format!("repeated variables: {}", list(&duplicated, 8)));
        }
        bail!("{}", parts.join("; "));
    }
    Ok(NetworkReport {
        role: role.to_string(),
        name: tf.name.clone(),
        build_func_name: tf.build_func_name.clone(),
        variables: tf.variables.iter().filter(|(n, _)| n != "lod").count(),
        params: numel,
        lod,
        static_kwargs: tf
            .static_kwargs
            .iter()
            .map(|(k, v)| (k.clone(), v.render()))
            .collect(),
    })
}

/// Gs on 4 fixed latents at `lod`, and D on its images: shapes and finiteness.
fn check_networks(
    models: &Models,
    net: &NetConfig,
    lod: f64,
    device: Device,
) -> Result<CheckReport> {
    // Deterministic latents without touching libtorch's generator: sin of a ramp.
    let z = (Tensor::arange(4 * net.nz, (Kind::Float, device)) * 0.7 + 0.3)
        .sin()
        .view([4, net.nz]);
    let img = models.gs.forward(&z, lod, true);
    let (score, _) = models.d.forward(&img, lod, 1);
    let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
    ensure!(
        finite(&img) && finite(&score),
        "non-finite outputs (the checkpoint holds NaN/Inf weights?)"
    );
    let stat = |t: Tensor| t.to_kind(Kind::Double).double_value(&[]);
    Ok(CheckReport {
        device: device_name(device),
        image_shape: img.size(),
        image_min: stat(img.min()),
        image_max: stat(img.max()),
        image_mean: stat(img.mean(Kind::Double)),
        image_std: stat(img.to_kind(Kind::Double).std(true)),
        d_score_mean: stat(score.mean(Kind::Double)),
    })
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = &self.net;
        writeln!(
            f,
            "imported {} (pickle protocol {}) → {}",
            self.source.display(),
            self.protocol,
            self.output.display()
        )?;
        writeln!(
            f,
            "  architecture: resolution {0}×{0}, nz {1}, fmap_base {2}, fmap_max {3}, infogan_nz {4}",
            n.resolution, n.nz, n.fmap_base, n.fmap_max, n.infogan_nz
        )?;
        for r in &self.networks {
            writeln!(
                f,
                "  {:<2} ({} / {}): {} variables, {} parameters, stored lod {}",
                r.role,
                r.name,
                r.build_func_name,
                r.variables,
                r.params,
                r.lod.map_or("none".to_string(), |l| l.to_string())
            )?;
        }
        writeln!(
            f,
            "  snapshot state: cur_nimg {} (lod {} under the schedule), optimiser state fresh",
            self.cur_nimg, self.lod
        )?;
        let c = &self.check;
        writeln!(
            f,
            "  check on {}: Gs images {:?} in [{:.3}, {:.3}], mean {:.3}, std {:.3}; mean D score {:.3}",
            c.device, c.image_shape, c.image_min, c.image_max, c.image_mean, c.image_std, c.d_score_mean
        )?;
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kimg_from_reference_names() {
        assert_eq!(
            kimg_from_name(Path::new("r/network-snapshot-012345.pkl")),
            Some(12345)
        );
        assert_eq!(
            kimg_from_name(Path::new("network-snapshot-000000.pkl")),
            Some(0)
        );
        assert_eq!(kimg_from_name(Path::new("e2s_ft.pkl")), None);
        assert_eq!(kimg_from_name(Path::new("network-snapshot-12a.pkl")), None);
        assert_eq!(kimg_from_name(Path::new("network-snapshot-.pkl")), None);
    }

    fn tf_net(name: &str, kwargs: &[(&str, Value)]) -> TfNetwork {
        TfNetwork {
            name: name.into(),
            build_func_name: String::new(),
            version: 3,
            static_kwargs: kwargs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            variables: Vec::new(),
        }
    }

    /// The reference's kwargs (no fmap) give the paper's defaults; D's infogan kwargs carry over.
    #[test]
    fn architecture_from_reference_kwargs() {
        let g_kw = [
            ("num_channels", Value::Int(3)),
            ("resolution", Value::Int(128)),
            ("label_size", Value::Int(0)),
            ("latent_size", Value::Int(12)),
            ("infogan_lambda", Value::Float(0.0)),
        ];
        let d_kw = [
            ("num_channels", Value::Int(3)),
            ("resolution", Value::Int(128)),
            ("label_size", Value::Int(0)),
            ("infogan_nz", Value::Int(3)),
            ("infogan_lambda", Value::Float(1.0)),
        ];
        let src = ReferencePkl {
            g: tf_net("G", &g_kw),
            d: tf_net("D", &d_kw),
            gs: tf_net("Gs", &g_kw),
            protocol: 4,
        };
        let mut notes = Vec::new();
        let (net, lambda) = architecture(&src, &mut notes).unwrap();
        assert_eq!(
            net,
            NetConfig {
                resolution: 128,
                nz: 12,
                num_channels: 3,
                fmap_base: 8192,
                fmap_max: 512,
                infogan_nz: 3
            }
        );
        assert_eq!(lambda, 1.0);
        assert!(notes.is_empty(), "{notes:?}");

        // Unsupported settings are refused, naming the kwarg.
        for (key, v) in [
            ("label_size", Value::Int(10)),
            ("num_channels", Value::Int(1)),
            ("fused_scale", Value::Bool(false)),
            ("fmap_decay", Value::Float(0.5)),
        ] {
            let mut g = tf_net("G", &g_kw);
            g.static_kwargs.retain(|(k, _)| k != key);
            g.static_kwargs.push((key.to_string(), v));
            let src = ReferencePkl {
                g,
                d: tf_net("D", &d_kw),
                gs: tf_net("Gs", &g_kw),
                protocol: 4,
            };
            let err = architecture(&src, &mut Vec::new()).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
