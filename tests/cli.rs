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
const CONTROL: [&str; 9] = [
    "config",
    "dry-run",
    "resume-exp",
    "resume-snapshot",
    "resume",
    // Chooses the trainer (`progan`, the one this test resolves, or `infogan-cr`: tests/infogan_cr.rs).
    "model",
    // How many processes train, not what they train: `data_parallel_flags_reach_the_request` and
    // tests/distributed.rs.
    "nproc",
    "master-port",
    "dist-timeout",
];

/// Options of every command (`--device`, `--seed`, …), handled outside `TrainArgs`.
const GLOBAL: [&str; 6] = ["device", "seed", "verbose", "quiet", "base-url", "help"];

/// Settings that are only valid together: (field under test, field its companion flag sets).
const COUPLED: [(&str, &str); 2] = [
    ("infogan_lambda", "infogan_nz"),
    ("infogan_nz", "infogan_lambda"),
];

#[test]
fn data_parallel_flags_reach_the_request() {
    let request = |args: &[&str]| -> TrainRequest {
        let argv = ["hessian-gan", "train"].iter().chain(args);
        let Command::Train(a) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a train command");
        };
        (*a).into()
    };
    let r = request(&[]);
    assert_eq!(
        (r.nproc, r.master_port, r.dist_timeout.as_secs()),
        (1, None, 1800)
    );
    let r = request(&[
        "--nproc",
        "4",
        "--master-port",
        "29511",
        "--dist-timeout",
        "60",
    ]);
    assert_eq!(
        (r.nproc, r.master_port, r.dist_timeout.as_secs()),
        (4, Some(29511), 60)
    );
    for bad in [["--nproc", "0"], ["--master-port", "70000"]] {
        let argv = ["hessian-gan", "train"].iter().chain(&bad);
        let e = Cli::try_parse_from(argv).err().unwrap().to_string();
        assert!(e.contains(bad[0]), "{e}");
    }
}

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
        ("score-ticks", vec!["3"], "score_ticks", json!(3)),
        ("score-samples", vec!["500"], "score_samples", json!(500)),
        ("score-groups", vec!["20"], "score_groups", json!(20)),
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
        ("cr-lambda", vec!["0.5"], "cr_lambda", json!(0.5)),
        ("cr-start-kimg", vec!["7"], "cr_start_kimg", json!(7.0)),
        ("cr-gap", vec!["0.3"], "cr_gap", json!(0.3)),
        ("cr-gap-end-kimg", vec!["9"], "cr_gap_end_kimg", json!(9.0)),
        ("cr-codes", vec!["3"], "cr_codes", json!(3)),
        ("set", vec!["hp_lambda=0.3"], "hp_lambda", json!(0.3)),
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

/// The parsed command line, or a panic naming it.
fn parse(args: &[&str]) -> Cli {
    let argv = std::iter::once("hessian-gan").chain(args.iter().copied());
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// What a `train`, `visualize`, `figures` or `evaluate` command line hands to the command, for comparisons.
fn options(args: &[&str]) -> String {
    use hessian_gan::commands::{evaluate, figures, visualize};
    match parse(args).command {
        Command::Train(a) => format!("{:?}", TrainRequest::from(*a)),
        Command::Visualize(a) => format!("{:?}", visualize::VisualizeOptions::from(*a)),
        Command::Figures(a) => format!("{:?}", figures::FiguresOptions::from(*a)),
        Command::Evaluate(a) => format!("{:?}", evaluate::EvaluateOptions::from(*a)),
        _ => panic!("{args:?}: not a command with options"),
    }
}

/// A flag in the reference's spelling and the values given with it.
type Flag<'a> = (&'a str, &'a [&'a str]);

#[test]
fn the_reference_spellings_of_every_flag_mean_the_same() {
    // docs/spec/progan_hp.md §4.1 (train.py), §4.2 (visualize.py), §4.4 (figures.py), §4.3 (evaluate.py): each
    // flag with a value, in the reference's spelling and in ours.
    let train: [Flag; 14] = [
        ("num_gpus", &["2"]),
        ("total_kimg", &["123"]),
        ("resume_exp", &["3"]),
        ("resume_snapshot", &["600"]),
        ("hp_lambda", &["0.25"]),
        ("num_rademacher_samples", &["3"]),
        ("layers_to_reg", &["1", "2", "5"]),
        ("warmup_kimg", &["7"]),
        ("hp_start_kimg", &["8"]),
        ("infogan_lambda", &["1.0"]),
        ("infogan_nz", &["4"]),
        ("compute_interp_ticks", &["-1"]),
        ("compute_metrics_ticks", &["10"]),
        ("metrics", &["FID", "PPL"]),
    ];
    let visualize: [Flag; 9] = [
        ("snapshot_kimgs", &["600", "latest"]),
        ("nz_per_vid", &["4"]),
        ("minibatch_size", &["10"]),
        ("interpolate_pre_norm", &[]),
        ("no_loop", &[]),
        ("stills_only", &[]),
        ("n_frames_to_save", &["3"]),
        ("pad_x", &["2"]),
        ("pad_y", &["5"]),
    ];
    let figures: [Flag; 5] = [
        ("snapshot_kimgs", &["600"]),
        ("minibatch_size", &["10"]),
        ("interpolate_pre_norm", &[]),
        ("model_names", &["HP", "vanilla"]),
        ("dataset_names", &["CLEVR"]),
    ];
    let commands: [(&[&str], &[Flag]); 3] = [
        (&["train"], &train),
        (&["visualize", "--models", "0"], &visualize),
        (&["figures", "--models", "0", "--fig", "diag"], &figures),
    ];
    for (base, flags) in commands {
        for (snake, values) in flags {
            let kebab = snake.replace('_', "-");
            let spelled = |flag: &str| -> Vec<String> {
                let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
                args.push(format!("--{flag}"));
                args.extend(values.iter().map(|v| v.to_string()));
                args
            };
            let (theirs, ours) = (spelled(snake), spelled(&kebab));
            let theirs: Vec<&str> = theirs.iter().map(String::as_str).collect();
            let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
            let without: Vec<&str> = base.to_vec();
            assert_eq!(options(&theirs), options(&ours), "{theirs:?}");
            assert_ne!(
                options(&ours),
                options(&without),
                "{ours:?} changes nothing"
            );
        }
    }
    // evaluate.py: --model (singular) and --snapshot_kimg; its --num_gpus and --resolution are accepted.
    assert_eq!(
        options(&[
            "evaluate",
            "--model",
            "clevr_simple_ft",
            "--snapshot_kimg",
            "600",
            "--num_gpus",
            "4",
            "--resolution",
            "128"
        ]),
        options(&[
            "evaluate",
            "--models",
            "clevr_simple_ft",
            "--snapshot-kimgs",
            "600"
        ])
    );
    // The reference's metric names reach the configuration as metrics.
    let cfg = resolve(&["--metrics", "FID", "PPL"]);
    assert_eq!(
        hessian_gan::metrics::parse_names(&cfg.metrics).unwrap(),
        [
            hessian_gan::metrics::MetricKind::Fid,
            hessian_gan::metrics::MetricKind::Ppl
        ]
    );
    // --help shows our spelling only.
    let help = Cli::command()
        .find_subcommand_mut("train")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(
        help.contains("--hp-lambda") && !help.contains("hp_lambda"),
        "{help}"
    );
}

#[test]
fn dataset_tool_subcommands_keep_the_reference_argument_order() {
    use hessian_gan::cli::dataset::DatasetCommand;
    let dataset = |args: &[&str]| match parse(args).command {
        Command::Dataset { command } => command.canonical(),
        _ => panic!("{args:?}: not a dataset command"),
    };
    // dataset_tool.py: the output (tfrecord_dir) first, then the images; shuffled unless --shuffle 0.
    assert_eq!(
        dataset(&["dataset", "create_from_images", "datasets/mine", "photos"]),
        dataset(&[
            "dataset",
            "create-from-images",
            "photos",
            "datasets/mine",
            "--shuffle"
        ])
    );
    assert_eq!(
        dataset(&[
            "dataset",
            "create_from_images",
            "out",
            "in",
            "--shuffle",
            "0"
        ]),
        dataset(&["dataset", "create-from-images", "in", "out"])
    );
    assert_eq!(
        dataset(&[
            "dataset",
            "create_edges_and_shoes",
            "datasets/e2s",
            "edges2shoes"
        ]),
        dataset(&[
            "dataset",
            "create-edges-and-shoes",
            "edges2shoes",
            "datasets/e2s",
            "--resolution",
            "256"
        ])
    );
    let DatasetCommand::CreateEdgesAndShoes { no_shuffle, .. } = dataset(&[
        "dataset",
        "create_edges_and_shoes",
        "o",
        "i",
        "--shuffle",
        "0",
    ]) else {
        panic!("not create-edges-and-shoes");
    };
    assert!(no_shuffle);
    assert_eq!(
        dataset(&["dataset", "extract", "datasets/mine", "pngs"]),
        DatasetCommand::Extract {
            dir: "datasets/mine".into(),
            out: "pngs".into(),
            level: None,
            max: None
        }
    );
    let help = Cli::command()
        .find_subcommand_mut("dataset")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(!help.contains("create_from_images"), "{help}");
}

#[test]
fn the_reference_training_scripts_resolve_to_our_presets() {
    // docs/spec/progan_hp.md §5: `python train.py … --num_gpus 4 --total_kimg 50000`, one line per script, with
    // `python train.py` replaced by `hessian-gan train` and `--dry-run` added; compared with configs/<preset>.json.
    let hp = |d: &str, l: &str, nz: &str| {
        format!("--dataset {d} --hp_lambda {l} --warmup_kimg 0 --nz {nz}")
    };
    let vanilla = |d: &str, nz: &str| format!("--dataset {d} --hp_lambda 0 --nz {nz}");
    let info = |d: &str, nz: &str, k: &str| {
        format!("--dataset {d} --hp_lambda 0 --nz {nz} --infogan_lambda 1.0 --infogan_nz {k}")
    };
    let scripts = [
        ("edges_and_shoes_hp", hp("edges_and_shoes", "0.1", "12")),
        ("clevr_simple_hp", hp("clevr_simple", "0.1", "12")),
        ("clevr_complex_hp", hp("clevr_complex", "0.1", "12")),
        ("clevr_1fov_hp", hp("clevr_1fov", "0.025", "12")),
        ("clevr_u_hp", hp("clevr_simple", "0.025", "3")),
        (
            "edges_and_shoes_vanilla",
            format!("{} --warmup_kimg 10000", vanilla("edges_and_shoes", "12")),
        ),
        ("clevr_simple_vanilla", vanilla("clevr_simple", "12")),
        ("clevr_complex_vanilla", vanilla("clevr_complex", "12")),
        ("clevr_1fov_vanilla", vanilla("clevr_1fov", "12")),
        ("clevr_u_vanilla", vanilla("clevr_simple", "3")),
        (
            "edges_and_shoes_infogan",
            info("edges_and_shoes", "12", "12"),
        ),
        ("clevr_simple_infogan", info("clevr_simple", "12", "4")),
        ("clevr_complex_infogan", info("clevr_complex", "12", "10")),
        ("clevr_1fov_infogan", info("clevr_1fov", "12", "1")),
        ("clevr_u_infogan", info("clevr_simple", "3", "3")),
    ];
    let presets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for (preset, flags) in scripts {
        let line = format!("train {flags} --num_gpus 4 --total_kimg 50000 --dry-run");
        let args: Vec<&str> = line.split_whitespace().collect();
        let Command::Train(a) = parse(&args).command else {
            panic!("not train");
        };
        let outcome = train::run(&globals(), &(*a).into()).unwrap();
        let train::TrainOutcome::DryRun { config, .. } = outcome else {
            panic!("--dry-run trained");
        };
        let want = TrainConfig::resolve(
            TrainConfig::default(),
            Some(&presets.join(format!("{preset}.json"))),
            Default::default(),
        )
        .unwrap();
        let got: TrainConfig = serde_json::from_str(&config).unwrap();
        assert_eq!(got, want, "{line} ≠ configs/{preset}.json");
    }
}

#[test]
fn geometry_flags_reach_its_options_and_its_defaults_are_the_librarys() {
    use hessian_gan::commands::geometry::GeometryOptions;
    let opts = |args: &[&str]| match parse(args).command {
        Command::Geometry(a) => GeometryOptions::from(&*a),
        _ => panic!("{args:?}: not geometry"),
    };
    let d = opts(&["geometry", "--models", "3"]);
    let lib = GeometryOptions::default();
    assert_eq!(
        format!(
            "{:?}",
            GeometryOptions {
                models: vec!["3".into()],
                ..lib
            }
        ),
        format!("{d:?}")
    );
    let o = opts(&[
        "geometry",
        "--models",
        "3",
        "4",
        "--snapshot-kimgs",
        "12",
        "--distance",
        "layer:4",
        "--ppl-detector",
        "v.pt",
        "--cache-dir",
        "c",
        "--lpips-native",
        "--post-norm",
        "--methods",
        "bp,forward-iter",
        "--num-points",
        "30",
        "--cutoff",
        "5",
        "--tol",
        "1e-4",
        "--max-steps",
        "9",
        "--eps",
        "1e-4",
        "--eig-list",
        "0,2",
        "--max-dist",
        "0.5",
        "--steps",
        "9",
        "--sphere",
        "--action-codes",
        "3",
        "--dist-steps",
        "11",
        "--batch",
        "4",
        "--out",
        "o",
        "--results-dir",
        "r",
        "--pretrained-dir",
        "p",
    ]);
    assert_eq!(o.models, ["3", "4"]);
    assert_eq!(o.snapshot_kimgs, ["12"]);
    assert_eq!(
        (o.distance.as_str(), o.ppl_detector.as_deref()),
        ("layer:4", Some("v.pt"))
    );
    assert!(o.lpips_native && o.sphere && o.post_norm);
    assert_eq!(o.methods, ["bp", "forward-iter"]);
    assert_eq!(
        (o.num_points, o.cutoff, o.max_steps),
        (30, Some(5), Some(9))
    );
    assert_eq!((o.tol, o.eps, o.max_dist), (1e-4, 1e-4, 0.5));
    assert_eq!(o.eig_list, [0, 2]);
    assert_eq!(
        (o.steps, o.action_codes, o.dist_steps, o.batch),
        (9, 3, 11, 4)
    );
    assert_eq!(
        (
            o.out.to_str(),
            o.results_dir.to_str(),
            o.pretrained_dir.to_str(),
            o.cache_dir.to_str()
        ),
        (Some("o"), Some("r"), Some("p"), Some("c"))
    );
}

#[test]
fn discover_flags_reach_its_options_and_its_defaults_are_the_librarys() {
    use hessian_gan::checkpoint::frozen::ClassChoice;
    use hessian_gan::commands::discover::DiscoverOptions;
    use hessian_gan::core::discover::{DirectionInit, SearchSpace};
    let opts = |args: &[&str]| match parse(args).command {
        Command::Discover(a) => a.options(),
        _ => panic!("{args:?}: not discover"),
    };
    let d = opts(&["discover", "--models", "3"]).unwrap();
    let lib = DiscoverOptions {
        model: "3".into(),
        ..DiscoverOptions::default()
    };
    assert_eq!(format!("{lib:?}"), format!("{d:?}"));
    let o = opts(&[
        "discover",
        "--models",
        "g.pth",
        "--ndirs",
        "40",
        "--search-space",
        "mid",
        "--init",
        "coords",
        "--no-ortho",
        "--path-size",
        "2.5",
        "--lr",
        "0.02",
        "--batch",
        "8",
        "--iters",
        "30",
        "--class",
        "random",
        "--save-every",
        "5",
        "--log-every",
        "2",
        "--vis-during-training",
        "--vis-every",
        "7",
        "--baselines",
        "coords,pca",
        "--no-compare",
        "--dataset",
        "x",
        "--score-samples",
        "99",
        "--out",
        "o",
    ])
    .unwrap();
    assert_eq!(o.model, "g.pth");
    assert_eq!(o.ndirs, Some(40));
    assert_eq!(o.search_space, SearchSpace::Mid);
    assert_eq!(o.init, DirectionInit::Coords);
    assert!(o.no_ortho && o.vis_during_training && o.skip_compare);
    assert_eq!((o.path_size, o.lr, o.batch, o.iters), (2.5, 0.02, 8, 30));
    assert_eq!(o.class, ClassChoice::Random);
    assert_eq!((o.save_every, o.log_every, o.vis_every), (5, 2, 7));
    assert_eq!(o.compare.baselines, vec!["coords", "pca"]);
    assert_eq!(o.compare.dataset.as_deref(), Some("x"));
    assert_eq!(o.compare.samples, 99);
    assert_eq!(o.out, std::path::PathBuf::from("o"));
    assert_eq!(
        opts(&["discover", "--models", "g.pth", "--class", "497"])
            .unwrap()
            .class,
        ClassChoice::Fixed(497)
    );
    let argv = [
        "hessian-gan",
        "discover",
        "--models",
        "g.pth",
        "--class",
        "dog",
    ];
    let err = Cli::try_parse_from(argv)
        .err()
        .expect("--class dog is refused")
        .to_string();
    assert!(err.contains("--class") && err.contains("dog"), "{err}");
    let none = opts(&["discover"]).unwrap_err().to_string();
    assert!(none.contains("--models"), "{none}");
}
