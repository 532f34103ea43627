//! `cargo xtask arch` (also the first step of `cargo xtask test`): the shape of
//! `theta/src` that the design promises, checked on every run.
//!
//! - The core modules (every file directly under `theta/src` but `lib.rs`) never
//!   name the persistence layer (`crate::persistence`, `persistence::`) and carry
//!   no `cfg(feature = "persistence")`: persistence plugs into the core through
//!   its one seam (`hooks.rs`, `attachment.rs`).
//! - The core modules import each other without a circle (`crate::<module>` paths
//!   in `use` items and in code).
//! - No two modules of the crate share a name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// Runs every check; the error lists every violation.
pub(crate) fn check() -> Result<()> {
    let src = workspace_root().join("theta/src");
    let mut problems = Vec::new();
    let core = core_modules(&src)?;
    for (module, text) in &core {
        for forbidden in [
            "crate::persistence",
            "persistence::",
            "feature = \"persistence\"",
        ] {
            if text.contains(forbidden) {
                problems.push(format!(
                    "core module `{module}` names the persistence layer (`{forbidden}`)"
                ));
            }
        }
    }
    let graph: BTreeMap<String, BTreeSet<String>> = core
        .iter()
        .map(|(module, text)| {
            let deps = crate_paths(text)
                .into_iter()
                .filter(|dep| dep != module && core.contains_key(dep))
                .collect();
            (module.clone(), deps)
        })
        .collect();
    if let Some(circle) = find_circle(&graph) {
        problems.push(format!(
            "import circle among core modules: {}",
            circle.join(" -> ")
        ));
    }
    let mut names: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    collect_module_names(&src, &mut names)?;
    for (name, paths) in names {
        if paths.len() > 1 {
            let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            problems.push(format!(
                "module name `{name}` is used {} times: {}",
                paths.len(),
                paths.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "theta/src breaks its architecture rules:\n  {}",
            problems.join("\n  ")
        );
    }
    eprintln!(
        "xtask: arch ok: {} core modules, no persistence in them, no import circle",
        core.len()
    );
    Ok(())
}

/// The core modules: name and source text of every `theta/src/*.rs` but `lib.rs`.
fn core_modules(src: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(src).with_context(|| format!("listing {}", src.display()))? {
        let path = entry?.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && stem != "lib" {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            out.insert(stem.to_string(), strip_comments(&text));
        }
    }
    Ok(out)
}

/// The source without `//` comments (doc comments may mention anything).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module named as `crate::<module>`, including inside `use crate::{..}`
/// groups.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in top_level_items(&group[..end]) {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The comma-separated items of a `use` group, nested groups kept whole.
fn top_level_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// The index of the `}` closing a group whose `{` was just consumed.
fn matching_brace(text: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| n == node).unwrap_or(0);
                let mut circle = path[start..].to_vec();
                circle.push(node.to_string());
                return Some(circle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, marks, path) {
                return Some(circle);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(circle);
        }
    }
    None
}

/// Every module file's name (`mod.rs` counts as its directory's name).
fn collect_module_names(dir: &Path, names: &mut BTreeMap<String, Vec<PathBuf>>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_module_names(&path, names)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let name = match stem {
            "lib" => continue,
            "mod" => path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string(),
            other => other.to_string(),
        };
        names.entry(name).or_default().push(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_paths_in_groups_and_code() {
        let text =
            "use crate::{actor::{Actor, Context}, cell::Item};\nlet x = crate::mailbox::lock(&m);";
        let found: Vec<String> = crate_paths(text).into_iter().collect();
        assert_eq!(found, ["actor", "cell", "mailbox"]);
    }

    #[test]
    fn finds_a_circle() {
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(
            find_circle(&graph),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }
}
