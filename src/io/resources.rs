//! The remote resources the reference publishes (docs/spec/progan_hp.md §6): its four datasets as multi-level TFRecords and
//! its 20 pretrained models as pickles, with their paths below the base URL (see `download::resolve_base_url`).
//!
//! The reference publishes no checksums and no sizes. [`KNOWN_CHECKSUMS`] is where verified SHA-256 values and sizes
//! go once someone has recorded them from a trusted download (`DownloadReport::sha256`); until then every lookup
//! gives `None` and a download is verified by the server's announced length only.

use anyhow::{bail, Result};

/// A dataset the reference's server holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatasetResource {
    pub name: &'static str,
    /// log2 of the largest level on the server: 8 (256²) for the CLEVR variants, 7 (128²) for edges_and_shoes.
    pub max_log2: u32,
}

/// The datasets known to the reference's `find_dataset`, less `clevr_u` (an alias, see [`dataset`]).
pub const DATASETS: [DatasetResource; 4] = [
    DatasetResource {
        name: "clevr_simple",
        max_log2: 8,
    },
    DatasetResource {
        name: "clevr_complex",
        max_log2: 8,
    },
    DatasetResource {
        name: "clevr_1fov",
        max_log2: 8,
    },
    DatasetResource {
        name: "edges_and_shoes",
        max_log2: 7,
    },
];

/// The smallest level the reference stores (r02 = 4×4).
pub const MIN_LOG2: u32 = 2;

/// One file on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path below the base URL, `/`-separated (also the reference's local path below its working directory).
    pub remote_path: String,
    /// The file's own name.
    pub file_name: String,
    /// Verified SHA-256 (lowercase hex), when recorded in [`KNOWN_CHECKSUMS`].
    pub sha256: Option<&'static str>,
    /// Verified size in bytes, when recorded in [`KNOWN_CHECKSUMS`].
    pub size: Option<u64>,
}

impl RemoteFile {
    fn new(remote_path: String) -> RemoteFile {
        let file_name = remote_path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let known = lookup_checksum(KNOWN_CHECKSUMS, &remote_path);
        RemoteFile {
            file_name,
            sha256: known.map(|k| k.sha256),
            size: known.map(|k| k.size),
            remote_path,
        }
    }

    /// The full URL below `base` (a resolved base URL).
    pub fn url(&self, base: &str) -> String {
        crate::io::download::join_url(base, &self.remote_path)
    }
}

/// A recorded checksum of one remote file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownChecksum {
    pub remote_path: &'static str,
    pub sha256: &'static str,
    pub size: u64,
}

/// Checksums of remote files, by `remote_path`. Empty: the reference publishes none (docs/spec/progan_hp.md §6), and none
/// has been recorded from a download yet. Add an entry only for a file whose content was checked (for a dataset,
/// by importing it and looking at it; for a model, by reproducing its samples).
pub const KNOWN_CHECKSUMS: &[KnownChecksum] = &[];

/// The entry of `table` for `remote_path`, if any.
pub fn lookup_checksum(
    table: &'static [KnownChecksum],
    remote_path: &str,
) -> Option<KnownChecksum> {
    table.iter().copied().find(|k| k.remote_path == remote_path)
}

/// A dataset name resolved against the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetDownload {
    pub dataset: DatasetResource,
    /// Set when the requested name was an alias (`clevr_u`), to be shown to the user.
    pub note: Option<&'static str>,
    /// One file per level, r02 … r`max_log2`, smallest first, as `(log2 resolution, file)`.
    pub levels: Vec<(u32, RemoteFile)>,
}

const CLEVR_U_NOTE: &str =
    "clevr_u is not a dataset of its own: CLEVR-U is a model with nz = 3 trained on \
                            clevr_simple, so clevr_simple is used";

/// Looks up a dataset by name. `clevr_u` (in the reference's valid list, docs/spec/progan_hp.md §6) maps to `clevr_simple` with a note.
/// Unknown names are an error listing the known ones.
pub fn dataset(name: &str) -> Result<DatasetDownload> {
    let (lookup, note) = if name == "clevr_u" {
        ("clevr_simple", Some(CLEVR_U_NOTE))
    } else {
        (name, None)
    };
    let Some(dataset) = DATASETS.iter().copied().find(|d| d.name == lookup) else {
        bail!(
            "unknown dataset {name:?}: the downloadable datasets are {} (clevr_u is an alias of clevr_simple)",
            dataset_names().join(", ")
        );
    };
    let levels = (MIN_LOG2..=dataset.max_log2)
        .map(|log2| {
            let path = format!("datasets/{n}/{n}-r{log2:02}.tfrecords", n = dataset.name);
            (log2, RemoteFile::new(path))
        })
        .collect();
    Ok(DatasetDownload {
        dataset,
        note,
        levels,
    })
}

/// Whether `name` is a dataset the server holds (including the alias `clevr_u`).
pub fn is_known_dataset(name: &str) -> bool {
    name == "clevr_u" || DATASETS.iter().any(|d| d.name == name)
}

/// The names [`dataset`] accepts, without the alias.
pub fn dataset_names() -> Vec<&'static str> {
    DATASETS.iter().map(|d| d.name).collect()
}

/// Model-name prefixes and where the server keeps them (docs/spec/progan_hp.md §6 table): (local prefix, server dir, file prefix).
pub const PRETRAINED_PREFIXES: [(&str, &str, &str); 5] = [
    ("clevr_simple", "clevr_simple", "simple"),
    ("clevr_complex", "clevr_complex", "complex"),
    ("clevr_1fov", "clevr_1fov", "1fov"),
    ("clevr_u", "clevr_u", "underparam"),
    ("edges_and_shoes", "edgeshoes", "e2s"),
];

/// Model kinds: fine-tuned with the Hessian Penalty, HP from scratch, InfoGAN, baseline (vanilla ProGAN).
pub const PRETRAINED_SUFFIXES: [&str; 4] = ["ft", "fs", "info", "bl"];

/// A pretrained model on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PretrainedResource {
    /// `<dataset>_<ft|fs|info|bl>`.
    pub name: String,
    /// The dataset prefix of the name (`clevr_u` included).
    pub dataset: &'static str,
    pub suffix: &'static str,
    /// `pretrained_models/<dir>/<abbr>_<suffix>.pkl` on the server.
    pub file: RemoteFile,
    /// The local file name, `<name>.pkl`, kept in `pretrained_models/` as the reference did.
    pub local_name: String,
}

/// Looks up one of the 20 pretrained names. Unknown names are an error listing the valid ones.
pub fn pretrained(name: &str) -> Result<PretrainedResource> {
    for (prefix, dir, abbr) in PRETRAINED_PREFIXES {
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) else {
            continue;
        };
        if let Some(suffix) = PRETRAINED_SUFFIXES.iter().copied().find(|s| *s == rest) {
            return Ok(PretrainedResource {
                name: name.to_string(),
                dataset: prefix,
                suffix,
                file: RemoteFile::new(format!("pretrained_models/{dir}/{abbr}_{suffix}.pkl")),
                local_name: format!("{name}.pkl"),
            });
        }
    }
    bail!(
        "unknown pretrained model {name:?}: valid names are {}",
        pretrained_names().join(", ")
    )
}

/// All 20 pretrained names, grouped by dataset.
pub fn pretrained_names() -> Vec<String> {
    PRETRAINED_PREFIXES
        .iter()
        .flat_map(|(prefix, _, _)| {
            PRETRAINED_SUFFIXES
                .iter()
                .map(move |s| format!("{prefix}_{s}"))
        })
        .collect()
}

/// Whether `name` is one of the 20 pretrained names.
pub fn is_pretrained_name(name: &str) -> bool {
    pretrained(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_levels_follow_the_reference() {
        let d = dataset("clevr_complex").unwrap();
        assert_eq!(d.note, None);
        let logs: Vec<u32> = d.levels.iter().map(|(l, _)| *l).collect();
        assert_eq!(logs, (2..=8).collect::<Vec<_>>());
        assert_eq!(
            d.levels[0].1.remote_path,
            "datasets/clevr_complex/clevr_complex-r02.tfrecords"
        );
        assert_eq!(d.levels[6].1.file_name, "clevr_complex-r08.tfrecords");
        assert_eq!(
            d.levels[0].1.url("http://h/res/"),
            "http://h/res/datasets/clevr_complex/clevr_complex-r02.tfrecords"
        );

        let e = dataset("edges_and_shoes").unwrap();
        assert_eq!(e.levels.len(), 6);
        assert_eq!(
            e.levels.last().unwrap().1.remote_path,
            "datasets/edges_and_shoes/edges_and_shoes-r07.tfrecords"
        );

        let u = dataset("clevr_u").unwrap();
        assert_eq!(u.dataset.name, "clevr_simple");
        assert!(u.note.unwrap().contains("clevr_simple"));
        assert_eq!(
            u.levels[0].1.remote_path,
            "datasets/clevr_simple/clevr_simple-r02.tfrecords"
        );
        assert!(is_known_dataset("clevr_u") && is_known_dataset("clevr_1fov"));
        assert!(!is_known_dataset("ffhq"));

        let err = dataset("clevr").unwrap_err().to_string();
        for name in dataset_names() {
            assert!(err.contains(name), "{err}");
        }
        assert!(!err.contains('\n'));
    }

    #[test]
    fn twenty_pretrained_names_map_to_the_server_table() {
        let names = pretrained_names();
        assert_eq!(names.len(), 20);
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), 20);
        for name in &names {
            let p = pretrained(name).unwrap();
            assert_eq!(&p.name, name);
            assert_eq!(p.local_name, format!("{name}.pkl"));
            assert!(p.file.remote_path.starts_with("pretrained_models/"));
            assert!(p.file.remote_path.ends_with(&format!("_{}.pkl", p.suffix)));
            assert_eq!(p.file.sha256, None, "the reference publishes no checksums");
        }
        let e = pretrained("edges_and_shoes_ft").unwrap();
        assert_eq!(e.file.remote_path, "pretrained_models/edgeshoes/e2s_ft.pkl");
        assert_eq!(e.file.file_name, "e2s_ft.pkl");
        assert_eq!(
            pretrained("clevr_u_info").unwrap().file.remote_path,
            "pretrained_models/clevr_u/underparam_info.pkl"
        );
        assert_eq!(
            pretrained("clevr_1fov_bl").unwrap().file.remote_path,
            "pretrained_models/clevr_1fov/1fov_bl.pkl"
        );
        assert_eq!(
            pretrained("clevr_simple_fs").unwrap().file.remote_path,
            "pretrained_models/clevr_simple/simple_fs.pkl"
        );
        // The reference's own import-time probe name is not valid (docs/spec/progan_hp.md §6 quirk).
        for bad in [
            "simple_fs",
            "clevr_simple_",
            "clevr_simple_xx",
            "clevr_simplefs",
            "edges_and_shoes_ft.pkl",
        ] {
            let err = pretrained(bad).unwrap_err().to_string();
            assert!(err.contains("clevr_u_bl") && err.contains(bad), "{err}");
            assert!(!is_pretrained_name(bad));
        }
    }

    #[test]
    fn checksum_table_lookup() {
        static TABLE: [KnownChecksum; 2] = [
            KnownChecksum {
                remote_path: "a/b.pkl",
                sha256: "00ff",
                size: 7,
            },
            KnownChecksum {
                remote_path: "c.pkl",
                sha256: "11ee",
                size: 9,
            },
        ];
        assert_eq!(lookup_checksum(&TABLE, "c.pkl").unwrap().size, 9);
        assert_eq!(lookup_checksum(&TABLE, "a/b.pkl").unwrap().sha256, "00ff");
        assert!(lookup_checksum(&TABLE, "b.pkl").is_none());
        // Every recorded entry must be a well-formed SHA-256 of a path the registry produces.
        for k in KNOWN_CHECKSUMS {
            assert_eq!(k.sha256.len(), 64);
            assert!(k
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
    }
}
