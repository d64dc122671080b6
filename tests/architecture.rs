//! The crate's layering (ARCHITECTURE.md), checked on the source text:
//! - a module imports only from layers below its own (`crate::…` and `super::…` paths, grouped `use` included);
//! - inside any module, its child modules form a DAG (a child may use its parent's items, not the reverse cycle
//!   of two siblings using each other);
//! - clap appears only in the CLI layer and the binary;
//! - a source file over 800 lines is named in ARCHITECTURE.md with the reason.
//!
//! The checker runs on this repository and, first, on small trees that break each rule, so it is known to fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; a module may import only from layers with a smaller rank.
const LAYERS: [&str; 9] = [
    "io",
    "core",
    "data",
    "metrics",
    "config",
    "checkpoint",
    "training",
    "commands",
    "cli",
];

const MAX_LINES: usize = 800;

/// One source file: its module path (`""` for lib.rs, `core::networks`, …), its text without comments, and
/// its length.
struct Source {
    file: PathBuf,
    module: Vec<String>,
    code: String,
    lines: usize,
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// The text with `//` comments removed (doc links are not dependencies), string literals blanked, and the unit
/// tests at the end of a file (`#[cfg(test)]` onwards) left out: they are not part of the layering.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.trim() == "#[cfg(test)]" {
            break;
        }
        let mut in_str = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' && prev != '\'' {
                in_str = !in_str;
                out.push('"');
            } else if !in_str {
                out.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push('\n');
    }
    out
}

fn read_tree(src: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            Source {
                module: module_of(src, &file),
                code: code_of(&text),
                lines: text.lines().count(),
                file,
            }
        })
        .collect()
}

/// Every path a file names through `crate::` or `super::` (with `use …::{a, b::c}` groups expanded), as
/// absolute module paths.
fn references(s: &Source) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let code = &s.code;
    // The module a `super::` is relative to: a mod.rs's parent is one level up like any other file's.
    let parent: Vec<String> = s.module[..s.module.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut at = 0;
        while let Some(i) = code[at..].find(prefix) {
            let start = at + i;
            at = start + prefix.len();
            let before = code[..start].chars().next_back().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == ':' {
                continue;
            }
            for path in expand(&code[at..]) {
                let mut full = base.clone();
                full.extend(path);
                out.push(full);
            }
        }
    }
    out
}

/// The paths at the start of `rest` (right after `crate::`): `a::b::C` or a group `{a, b::{c, d}}`.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut cur = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        items.push(cur);
        return items
            .iter()
            .flat_map(|item| expand(item.trim()))
            .filter(|p| !p.is_empty())
            .collect();
    }
    let mut path = Vec::new();
    let mut s = rest;
    loop {
        let ident: String = s
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        s = &s[ident.len()..];
        path.push(ident);
        match s.strip_prefix("::") {
            Some(next) if next.starts_with('{') => {
                return expand(next)
                    .into_iter()
                    .map(|p| path.iter().cloned().chain(p).collect())
                    .collect();
            }
            Some(next) => s = next,
            None => break,
        }
    }
    vec![path]
}

/// The longest prefix of `path` that is a module of the tree.
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

fn layer_rank(module: &[String]) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|l| l == top)
}

fn show(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// Every violation of the layering rules in the tree under `src` (a crate's `src/`), one line each.
fn violations(src: &Path, architecture_md: &str) -> Vec<String> {
    let sources = read_tree(src);
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let mut bad = Vec::new();
    // Edges between siblings: parent module → (child, child) pairs.
    let mut sibling_edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for s in &sources {
        let name = s.file.strip_prefix(src).unwrap().display().to_string();
        let is_binary = name == "main.rs";
        if s.code.contains("clap")
            && !is_binary
            && s.module.first().map(String::as_str) != Some("cli")
        {
            bad.push(format!("src/{name} uses clap outside the CLI layer"));
        }
        if s.lines > MAX_LINES && !architecture_md.contains(&format!("src/{name}")) {
            bad.push(format!(
                "src/{name} has {} lines (over {MAX_LINES}) and ARCHITECTURE.md does not say why",
                s.lines
            ));
        }
        if is_binary || s.module.is_empty() {
            continue;
        }
        let Some(rank) = layer_rank(&s.module) else {
            bad.push(format!(
                "src/{name}: module {} is in no layer of ARCHITECTURE.md",
                show(&s.module)
            ));
            continue;
        };
        for r in references(s) {
            let target = resolve(&r, &modules);
            if target.is_empty() {
                bad.push(format!(
                    "src/{name} uses crate-root item crate::{}",
                    r.join("::")
                ));
                continue;
            }
            let Some(target_rank) = layer_rank(&target) else {
                continue;
            };
            if target_rank > rank {
                bad.push(format!(
                    "src/{name} ({}) imports {} from the higher layer {}",
                    LAYERS[rank],
                    show(&target),
                    LAYERS[target_rank]
                ));
            }
            // The lowest common ancestor and the two children of it that lead to each side.
            let common = s
                .module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < s.module.len() && common < target.len() {
                sibling_edges
                    .entry(s.module[..common].to_vec())
                    .or_default()
                    .insert((s.module[common].clone(), target[common].clone()));
            }
        }
    }
    for (parent, edges) in &sibling_edges {
        if let Some(cycle) = find_cycle(edges) {
            bad.push(format!(
                "import cycle inside {}: {}",
                show(parent),
                cycle.join(" → ")
            ));
        }
    }
    bad
}

/// A cycle in a directed graph given by its edges, as the list of nodes around it.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    // Depth-first search with colours: 1 on the stack, 2 done.
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        colour: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        colour.insert(n, 1);
        stack.push(n);
        for &m in next.get(n).into_iter().flatten() {
            match colour.get(m).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|&x| x == m).unwrap();
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(m.to_string());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, next, colour, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n, 2);
        None
    }
    let mut colour = BTreeMap::new();
    let nodes: Vec<&str> = next.keys().copied().collect();
    for n in nodes {
        if colour.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, &next, &mut colour, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn write(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_checker_finds_each_kind_of_violation() {
    let root = std::env::temp_dir().join(format!("hg-architecture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write(
        &root,
        "lib.rs",
        "pub mod io;\npub mod core;\npub mod cli;\n",
    );
    write(&root, "io/mod.rs", "pub mod fs;\npub mod video;\n");
    // An upward import (io → core), hidden in a group.
    write(
        &root,
        "io/fs.rs",
        "use crate::{io::video, core::hessian::Penalty};\n",
    );
    // A sibling cycle: core::a → core::b → core::a (one through super::).
    write(
        &root,
        "core/mod.rs",
        "pub mod a;\npub mod b;\npub mod hessian;\n",
    );
    write(&root, "core/a.rs", "use super::b::B;\n");
    write(&root, "core/b.rs", "pub fn f() { crate::core::a::g() }\n");
    write(
        &root,
        "core/hessian.rs",
        "// crate::cli::X in a comment is not an import\n#[cfg(test)]\nmod tests { use crate::cli; }\n",
    );
    write(&root, "io/video.rs", &"let x = 1;\n".repeat(MAX_LINES + 1));
    write(
        &root,
        "cli/mod.rs",
        "use clap::Parser;\nuse crate::core::a;\n",
    );
    // clap outside the CLI, and a module in no layer.
    write(&root, "extra/mod.rs", "#[derive(clap::Args)]\nstruct X;\n");
    let found = violations(&root, "");
    let has = |needle: &str| found.iter().any(|v| v.contains(needle));
    assert!(
        has("src/io/fs.rs (io) imports core::hessian from the higher layer core"),
        "{found:#?}"
    );
    assert!(has("import cycle inside core: a → b → a"), "{found:#?}");
    assert!(
        has("src/extra/mod.rs uses clap outside the CLI layer"),
        "{found:#?}"
    );
    assert!(has("module extra is in no layer"), "{found:#?}");
    assert!(has("src/io/video.rs has 801 lines"), "{found:#?}");
    assert!(!has("hessian.rs"), "a comment is not an import: {found:#?}");
    assert!(!has("src/cli/mod.rs"), "{found:#?}");
    assert_eq!(found.len(), 5, "{found:#?}");
    // The reason in ARCHITECTURE.md lifts the length rule.
    let found = violations(&root, "- `src/io/video.rs`: one long table");
    assert!(!found.iter().any(|v| v.contains("801 lines")), "{found:#?}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_crate_keeps_its_layers() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(repo.join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md describes the layers");
    for layer in LAYERS {
        assert!(
            architecture.contains(&format!("`{layer}/`"))
                || architecture.contains(&format!("`{layer}.rs`")),
            "ARCHITECTURE.md does not describe the layer {layer}"
        );
    }
    let found = violations(&repo.join("src"), &architecture);
    assert!(
        found.is_empty(),
        "layering violations:\n{}",
        found.join("\n")
    );
}
