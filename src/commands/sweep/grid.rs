//! The grid of a sweep: `--seeds` (`1-10`, `1,3,5`, mixes), `--set KEY=V1,V2` axes of `TrainConfig` (or
//! InfoGAN-CR) settings, their product as arms, and arms × seeds as runs. Every setting is checked against the
//! preset before anything runs, so that a typo fails in a second instead of in every run of the sweep.

use crate::config::infogan_cr::{is_cr_config, CrConfig};
use crate::config::TrainConfig;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// Settings the sweep itself decides for every run: a `--set` of them would fight the sweep's own.
const RESERVED: [(&str, &str); 3] = [
    ("seed", "the seeds come from --seeds"),
    (
        "results_dir",
        "every run's results directory is inside the sweep directory",
    ),
    ("model", "the model comes from the --config preset"),
];

/// One `--set` axis: a setting and the values it takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<Value>,
}

/// One combination of the axes' values: the runs of an arm differ only by seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Arm {
    /// `hp_lambda=0.05,nz=12`, or `base` when the sweep has no `--set`.
    pub name: String,
    /// File-name-safe form of `name`: `hp_lambda-0.05_nz-12`.
    pub slug: String,
    pub overrides: Map<String, Value>,
}

/// `--seeds`: comma-separated seeds and inclusive ranges `A-B`, in the given order, without repeats.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let mut seeds: Vec<u64> = Vec::new();
    for part in text.split(',').map(str::trim) {
        ensure!(
            !part.is_empty(),
            "--seeds '{text}': empty item (use e.g. 1-10 or 1,3,5)"
        );
        let number = |s: &str| -> Result<u64> {
            s.trim().parse().map_err(|_| {
                anyhow::anyhow!("--seeds '{text}': '{s}' is not a non-negative integer")
            })
        };
        let range = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                ensure!(
                    a <= b,
                    "--seeds '{text}': range {part} ends below its start"
                );
                a..=b
            }
            None => {
                let a = number(part)?;
                a..=a
            }
        };
        for s in range {
            ensure!(
                !seeds.contains(&s),
                "--seeds '{text}': seed {s} appears twice"
            );
            seeds.push(s);
        }
    }
    ensure!(!seeds.is_empty(), "--seeds is empty");
    Ok(seeds)
}

/// Splits on commas outside brackets and quotes, so that a list value (`layers_to_reg=[1,2],[3]`) stays whole.
fn split_values(text: &str) -> Vec<&str> {
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `--set KEY=V1,V2,…`: each value as JSON (numbers, booleans, lists), else as text, like `train --set`.
pub fn parse_axis(text: &str) -> Result<Axis> {
    let Some((key, values)) = text.split_once('=') else {
        bail!("--set '{text}': expected KEY=V1,V2,… (e.g. hp_lambda=0.05,0.1)");
    };
    let key = key.trim().replace('-', "_");
    ensure!(!key.is_empty(), "--set '{text}': empty setting name");
    ensure!(
        !values.trim().is_empty(),
        "--set {key}: no values (e.g. --set {key}=V1,V2)"
    );
    let mut parsed = Vec::new();
    for v in split_values(values).into_iter().map(str::trim) {
        ensure!(!v.is_empty(), "--set {key}={values}: empty value");
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        ensure!(
            !parsed.contains(&value),
            "--set {key}: value {v} appears twice"
        );
        parsed.push(value);
    }
    Ok(Axis {
        key,
        values: parsed,
    })
}

/// A value as it appears in an arm's name: strings bare, everything else as JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Keeps letters, digits, `.`, `_` and `-` (file-name-safe everywhere), and turns the rest into `_`.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The arms: the product of the axes' values, the first axis varying slowest.
pub fn arms(axes: &[Axis]) -> Vec<Arm> {
    let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for axis in axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                axis.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((axis.key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
        .into_iter()
        .map(|c| {
            if c.is_empty() {
                return Arm {
                    name: "base".into(),
                    slug: "base".into(),
                    overrides: Map::new(),
                };
            }
            let name = c
                .iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect::<Vec<_>>()
                .join(",");
            let slug = c
                .iter()
                .map(|(k, v)| format!("{k}-{}", slug(&show(v))))
                .collect::<Vec<_>>()
                .join("_");
            Arm {
                name,
                slug,
                overrides: c.into_iter().collect(),
            }
        })
        .collect()
}

/// The preset as JSON, with errors naming `--config`.
pub fn read_preset(config: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("--config {}: cannot read it", config.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("--config {} is not valid JSON", config.display()))
}

/// Checks the axes against the preset's model: each key is a setting and not one the sweep sets itself; then each
/// arm (with `extra`, the settings of the train flags after `--`) resolves to a valid configuration.
pub fn validate(config: &Path, axes: &[Axis], extra: &Map<String, Value>) -> Result<()> {
    let cr = is_cr_config(&read_preset(config)?);
    let known = match cr {
        true => serde_json::to_value(CrConfig::default())?,
        false => serde_json::to_value(TrainConfig::default())?,
    };
    let mut seen: Vec<&str> = Vec::new();
    for axis in axes {
        if let Some((_, why)) = RESERVED.iter().find(|(k, _)| *k == axis.key) {
            bail!("--set {}: not allowed in a sweep ({why})", axis.key);
        }
        ensure!(
            known.get(&axis.key).is_some(),
            "--set {}: unknown {} setting '{}' (the names of configs/*.json)",
            axis.key,
            if cr { "InfoGAN-CR" } else { "training" },
            axis.key
        );
        ensure!(
            !seen.contains(&axis.key.as_str()),
            "--set {}: given twice (list all its values in one --set)",
            axis.key
        );
        seen.push(&axis.key);
    }
    for arm in arms(axes) {
        let mut overrides = extra.clone();
        overrides.extend(arm.overrides.clone());
        let resolved = match cr {
            true => CrConfig::resolve(CrConfig::default(), Some(config), overrides).map(drop),
            false => {
                TrainConfig::resolve(TrainConfig::default(), Some(config), overrides).map(drop)
            }
        };
        resolved.with_context(|| format!("arm {}", arm.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seeds_mix_ranges_and_lists() {
        assert_eq!(parse_seeds("1-3,7, 9-10").unwrap(), vec![1, 2, 3, 7, 9, 10]);
        assert_eq!(parse_seeds("5").unwrap(), vec![5]);
        for bad in ["", "5-1", "1,,2", "a", "1-", "2,1-3"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_split_outside_brackets() {
        let a = parse_axis("layers_to_reg=[1,2],[3]").unwrap();
        assert_eq!(a.values, vec![json!([1, 2]), json!([3])]);
        let a = parse_axis("dataset=a,b").unwrap();
        assert_eq!(a.values, vec![json!("a"), json!("b")]);
        assert!(parse_axis("hp_lambda").is_err());
        assert!(parse_axis("hp_lambda=").is_err());
        assert!(parse_axis("hp_lambda=0.1,0.1").is_err());
    }

    #[test]
    fn arms_are_the_product_first_axis_slowest() {
        let axes = [
            parse_axis("hp_lambda=0,0.1").unwrap(),
            parse_axis("nz=3,4,5").unwrap(),
        ];
        let arms = arms(&axes);
        assert_eq!(arms.len(), 6);
        assert_eq!(arms[0].name, "hp_lambda=0,nz=3");
        assert_eq!(arms[5].slug, "hp_lambda-0.1_nz-5");
        assert_eq!(super::arms(&[])[0].name, "base");
    }
}
