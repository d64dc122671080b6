//! The command line against the library: every `train` flag reaches the resolved `TrainConfig`, the CLI's
//! defaults are the library's, and the layer below the CLI sees plain options.

mod common;
use common::globals;

use clap::{CommandFactory, Parser};
use hessian_gan::cli::{Cli, Command};
use hessian_gan::commands::train::{self, TrainRequest};
use hessian_gan::config::TrainConfig;
use serde_json::{json, Value};

/// `hessian-gan train ARGS…` parsed by the real CLI and resolved by the `train` command.
fn resolve(args: &[&str]) -> TrainConfig {
    let argv = ["hessian-gan", "train"].iter().chain(args);
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Train(args) = cli.command else {
        panic!("not a train command");
    };
    let request: TrainRequest = (*args).into();
    train::resolve(&globals(), &request).unwrap().0
}

/// Flags that steer the command rather than set a training setting (resume, preset, dry run); they have their own
/// tests in tests/train.rs.
const CONTROL: [&str; 5] = [
    "config",
    "dry-run",
    "resume-exp",
    "resume-snapshot",
    "resume",
];

/// Options of every command (`--device`, `--seed`, …), handled outside `TrainArgs`.
const GLOBAL: [&str; 6] = ["device", "seed", "verbose", "quiet", "base-url", "help"];

/// Settings that are only valid together: (field under test, field its companion flag sets).
const COUPLED: [(&str, &str); 2] = [
    ("infogan_lambda", "infogan_nz"),
    ("infogan_nz", "infogan_lambda"),
];

#[test]
fn every_train_flag_changes_the_resolved_config() {
    // For each setting flag: a value unlike the default, and the TrainConfig field (JSON) it must set to that.
    let cases: Vec<(&str, Vec<&str>, &str, Value)> = vec![
        ("dataset", vec!["clevr_u"], "dataset", json!("clevr_u")),
        ("resolution", vec!["64"], "resolution", json!(64)),
        ("nz", vec!["7"], "nz", json!(7)),
        ("total-kimg", vec!["123"], "total_kimg", json!(123.0)),
        ("hp-lambda", vec!["0.25"], "hp_lambda", json!(0.25)),
        ("epsilon", vec!["0.05"], "epsilon", json!(0.05)),
        (
            "num-rademacher-samples",
            vec!["3"],
            "num_rademacher_samples",
            json!(3),
        ),
        (
            "layers-to-reg",
            vec!["2", "4"],
            "layers_to_reg",
            json!([2, 4]),
        ),
        ("warmup-kimg", vec!["5"], "warmup_kimg", json!(5.0)),
        ("hp-start-kimg", vec!["6"], "hp_start_kimg", json!(6.0)),
        // InfoGAN needs both its weight and its size: each is given with the other (see COUPLED).
        (
            "infogan-lambda",
            vec!["2", "--infogan-nz", "1"],
            "infogan_lambda",
            json!(2.0),
        ),
        (
            "infogan-nz",
            vec!["3", "--infogan-lambda", "1"],
            "infogan_nz",
            json!(3),
        ),
        ("num-gpus", vec!["2"], "num_gpus", json!(2)),
        (
            "compute-interp-ticks",
            vec!["-1"],
            "compute_interp_ticks",
            json!(-1),
        ),
        (
            "compute-metrics-ticks",
            vec!["7"],
            "compute_metrics_ticks",
            json!(7),
        ),
        ("metrics", vec!["fid,ppl"], "metrics", json!(["fid", "ppl"])),
        ("fmap-base", vec!["4096"], "fmap_base", json!(4096)),
        ("fmap-max", vec!["256"], "fmap_max", json!(256)),
        (
            "lod-initial-resolution",
            vec!["8"],
            "lod_initial_resolution",
            json!(8),
        ),
        (
            "lod-training-kimg",
            vec!["300"],
            "lod_training_kimg",
            json!(300.0),
        ),
        (
            "lod-transition-kimg",
            vec!["200"],
            "lod_transition_kimg",
            json!(200.0),
        ),
        (
            "minibatch-scale",
            vec!["0.5"],
            "minibatch_scale",
            json!(0.5),
        ),
        (
            "minibatch",
            vec!["32=16", "64=8"],
            "minibatch",
            json!({"32": 16, "64": 8}),
        ),
        ("tick-kimg", vec!["2"], "tick_kimg", json!(2.0)),
        (
            "network-snapshot-ticks",
            vec!["9"],
            "network_snapshot_ticks",
            json!(9),
        ),
        (
            "results-dir",
            vec!["elsewhere"],
            "results_dir",
            json!("elsewhere"),
        ),
        (
            "datasets-dir",
            vec!["data2"],
            "datasets_dir",
            json!("data2"),
        ),
        ("precision", vec!["bf16"], "precision", json!("bf16")),
    ];

    // Every flag of `train` is either a setting with a case above or a control flag: a new flag fails here until
    // it is added (and shown to reach the configuration).
    let cmd = Cli::command();
    let train_cmd = cmd.find_subcommand("train").expect("a train subcommand");
    for arg in train_cmd.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        assert!(
            CONTROL.contains(&long) || GLOBAL.contains(&long) || cases.iter().any(|c| c.0 == long),
            "--{long} has no case in this test"
        );
    }

    let defaults = serde_json::to_value(resolve(&[])).unwrap();
    assert_eq!(
        defaults,
        serde_json::to_value(TrainConfig::default()).unwrap()
    );
    for (flag, values, field, want) in &cases {
        let mut args = vec![format!("--{flag}")];
        args.extend(values.iter().map(|v| v.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let got = serde_json::to_value(resolve(&args)).unwrap();
        assert_ne!(
            defaults[*field], *want,
            "--{flag}: pick a value unlike the default"
        );
        assert_eq!(
            got[*field], *want,
            "--{flag} {values:?} did not set {field}"
        );
        // …and nothing else.
        for (key, value) in got.as_object().unwrap() {
            let coupled = COUPLED.iter().any(|&(a, b)| a == *field && b == key);
            if key != field && !coupled {
                assert_eq!(*value, defaults[key], "--{flag} also changed {key}");
            }
        }
    }
}

#[test]
fn seed_reaches_the_configuration_and_presets_sit_below_flags() {
    let argv = ["hessian-gan", "--seed", "42", "train", "--nz", "5"];
    let cli = Cli::try_parse_from(argv).unwrap();
    let Command::Train(args) = cli.command else {
        panic!("not a train command");
    };
    let mut g = globals();
    g.seed = cli.seed;
    let root = common::scratch("preset");
    let preset = root.join("p.json");
    std::fs::write(&preset, r#"{"nz": 9, "hp_lambda": 0.0}"#).unwrap();
    let mut request: TrainRequest = (*args).into();
    request.config = Some(preset);
    let (cfg, resumed) = train::resolve(&g, &request).unwrap();
    assert!(resumed.is_none());
    assert_eq!(cfg.seed, 42);
    assert_eq!(cfg.nz, 5, "the command line wins over the preset");
    assert_eq!(cfg.hp_lambda, 0.0, "the preset wins over the defaults");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_flag_values_are_one_line_errors() {
    for (args, needle) in [
        (vec!["train", "--minibatch", "32"], "RES=BATCH"),
        (vec!["train", "--precision", "fp8"], "fp8"),
        (vec!["visualize", "--models", "m", "--format", "avi"], "avi"),
        (vec!["figures", "--models", "m", "--fig", "nope"], "nope"),
    ] {
        let argv = std::iter::once("hessian-gan").chain(args.iter().copied());
        let err = Cli::try_parse_from(argv)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
