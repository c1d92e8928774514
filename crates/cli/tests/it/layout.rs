//! The code layout docs/ARCHITECTURE.md promises: no module of any crate reaches, through
//! `crate::` paths, a module that reaches it back (a cycle makes two files one concept).
//! Comments and `#[cfg(test)]` modules are left out; a parent module and its children may refer
//! to each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`kernels::fused`, "" for lib.rs) -> source, for one crate's `src`.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                let code = std::fs::read_to_string(&p).unwrap();
                let code = code.split("#[cfg(test)]").next().unwrap_or("");
                let code: String =
                    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
                out.insert(parts.join("::"), code);
            }
        }
    }
    out
}

/// The modules `code` (of module `this`) names through `crate::a::b`, `crate::{a, b}` and
/// `super::a` paths (the longest known prefix of each).
fn references(code: &str, this: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let parent = this.rsplit_once("::").map_or("", |(p, _)| p);
    let mut paths = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            paths.extend(inner.split(',').map(|p| p.trim().chars().take_while(|&c| ident(c)).collect::<String>()));
        } else {
            paths.push(rest.chars().take_while(|&c| ident(c)).collect());
        }
    }
    for (i, _) in code.match_indices("super::") {
        if i >= 2 && &code[i - 2..i] == "::" {
            continue; // part of a longer path
        }
        let rest: String = code[i + 7..].chars().take_while(|&c| ident(c)).collect();
        paths.push(if parent.is_empty() { rest } else { format!("{parent}::{rest}") });
    }
    let mut refs = BTreeSet::new();
    for path in paths {
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        for n in (1..=segments.len()).rev() {
            let m = segments[..n].join("::");
            if known.contains(&m) {
                refs.insert(m);
                break;
            }
        }
    }
    refs
}

fn related(a: &str, b: &str) -> bool {
    a.is_empty() || b.is_empty() || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

#[test]
fn no_crate_has_a_module_cycle() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let mods = modules(&src);
        let known: BTreeSet<String> = mods.keys().cloned().collect();
        let edges: BTreeMap<&str, BTreeSet<String>> = mods
            .iter()
            .map(|(m, code)| (m.as_str(), references(code, m, &known).into_iter().filter(|r| !related(m, r)).collect()))
            .collect();
        // A cycle exists iff some module reaches itself.
        for start in edges.keys() {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&str> = edges[start].iter().map(String::as_str).collect();
            while let Some(m) = todo.pop() {
                assert_ne!(m, *start, "{}: module `{start}` reaches itself through crate:: paths", src.display());
                if seen.insert(m) {
                    todo.extend(edges.get(m).into_iter().flatten().map(String::as_str));
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "expected the workspace's crates, found {checked}");
}

#[test]
fn the_reference_finder_sees_what_a_cycle_needs() {
    let known: BTreeSet<String> = ["a", "b", "b::c"].iter().map(|s| s.to_string()).collect();
    let refs = references("use crate::b::c::Thing;\nlet x = crate::a::f();", "z", &known);
    assert_eq!(refs, BTreeSet::from(["b::c".to_string(), "a".to_string()]));
    assert_eq!(references("use crate::{a, b::c};", "z", &known).len(), 2);
    assert_eq!(references("use super::c::X;", "b::d", &known), BTreeSet::from(["b::c".to_string()]));
    assert!(related("b", "b::c") && related("", "a") && !related("a", "b"));
}
