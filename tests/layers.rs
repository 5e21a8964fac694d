//! The map of ARCHITECTURE.md, enforced: no import circle between files,
//! and no import that runs up between the layers it names. Reads the
//! sources of both crates (std only) and follows every `crate::`, `super::`
//! and `self::` path (in `use` items and inline) to the file of the module
//! it names. A module and its own submodules are one room: edges between a
//! file and its ancestors or descendants are not counted. Test code (files
//! named `tests.rs`, and a file from its `#[cfg(test)]` on) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of the server crate, bottom first, each with the modules
/// (paths from the crate root) that belong to it. An import may go to the
/// same layer or any layer below, never above. Keep in step with
/// ARCHITECTURE.md's "Layers".
const LAYERS: &[(&str, &[&str])] = &[
    ("bottom", &["flags", "file", "logs"]),
    ("offline", &["offline", "certs"]),
    ("cluster", &["cluster"]),
    ("server", &["server"]),
    (
        "commands",
        &[
            "mutate", "test", "explain", "policy", "serve", "cli", "main",
        ],
    ),
];

/// What the second pass of the middle floor has not untied yet, exactly
/// (ARCHITECTURE.md, "Layers"): nothing. The check fails on any problem not
/// listed here and on any listed one that is gone, so this list only
/// shrinks; keep it empty.
const NOT_YET: &[&str] = &[];

/// The core's layers, bottom first (the core's own map).
const CORE_LAYERS: &[(&str, &[&str])] = &[
    ("vocabulary", &["vocabulary", "text", "names", "k8s"]),
    ("model", &["config", "pod", "bounds"]),
    ("decision", &["selection", "patch"]),
    ("review", &["review", "policy"]),
];

/// One crate's sources: module path (`a::b`) to file.
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let path = entry.path();
            let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name.to_owned());
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut p = prefix.to_vec();
                match name {
                    "lib" if prefix.is_empty() => {}
                    "main" if prefix.is_empty() => p.push("main".to_owned()),
                    "mod" => {}
                    other => p.push(other.to_owned()),
                }
                out.insert(p.join("::"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &[], &mut out);
    out
}

/// The source without comments and test code.
fn product_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string is rare in a path-bearing line; good
            // enough for a map check.
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names from `crate`, `super` or `self` (and, in
/// main.rs, from the library crate), as segments; `use` groups expanded.
fn paths(code: &str, library: Option<&str>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` items, with their braces.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        // An item starts its line (after `pub`, `pub(crate)`): `use ` in
        // a message ("use the webhook for it") is not an import.
        let line = &rest[rest[..at].rfind('\n').map_or(0, |n| n + 1)..at];
        let item = &rest[at + 4..];
        rest = item;
        let line = line.trim();
        if !(line.is_empty() || line == "pub" || line.starts_with("pub(")) {
            continue;
        }
        let Some(end) = item.find(';') else { break };
        // Whitespace out, but ` as ` kept: `expand` drops the alias.
        let tree: String = item[..end]
            .split_whitespace()
            .map(|t| if t == "as" { " as " } else { t })
            .collect();
        expand(&tree, &mut Vec::new(), &mut out);
    }
    // Inline paths (`crate::a::b(...)`).
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let begin = from + at;
            from = begin + start.len();
            if code[..begin]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            {
                continue;
            }
            let segs: Vec<String> = code[begin..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or_default()
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            out.push(segs);
        }
    }
    let first = |p: &Vec<String>| p.first().cloned().unwrap_or_default();
    out.into_iter()
        .filter_map(|mut p| {
            let head = first(&p);
            if Some(head.as_str()) == library {
                p[0] = "crate".to_owned();
            }
            matches!(
                p.first().map(String::as_str),
                Some("crate" | "super" | "self")
            )
            .then_some(p)
        })
        .collect()
}

/// `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim_start_matches("::");
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let close = tree.rfind('}').unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        let segs: Vec<String> = head
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let depth = prefix.len();
        prefix.extend(segs);
        let mut level = 0;
        let mut part = String::new();
        for c in inner.chars().chain(std::iter::once(',')) {
            match c {
                '{' => {
                    level += 1;
                    part.push(c);
                }
                '}' => {
                    level -= 1;
                    part.push(c);
                }
                ',' if level == 0 => {
                    if !part.is_empty() {
                        expand(&part, prefix, out);
                    }
                    part.clear();
                }
                _ => part.push(c),
            }
        }
        prefix.truncate(depth);
    } else {
        let name = tree.split(" as ").next().unwrap_or(tree);
        let mut p = prefix.clone();
        p.extend(
            name.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        out.push(p);
    }
}

/// The module a path names: resolved against `here`, then the longest
/// prefix that is a module of the crate.
fn target(path: &[String], here: &str, mods: &BTreeMap<String, PathBuf>) -> String {
    let mut at: Vec<String> = if here.is_empty() {
        Vec::new()
    } else {
        here.split("::").map(str::to_owned).collect()
    };
    let mut segs = path.iter();
    let mut rest = Vec::new();
    for (i, s) in segs.by_ref().enumerate() {
        match s.as_str() {
            "crate" if i == 0 => at.clear(),
            "self" if i == 0 => {}
            "super" => {
                at.pop();
            }
            other => {
                rest.push(other.to_owned());
                break;
            }
        }
    }
    rest.extend(segs.cloned());
    let mut best = at.join("::");
    for s in rest {
        at.push(s);
        let name = at.join("::");
        if mods.contains_key(&name) {
            best = name;
        } else {
            break;
        }
    }
    best
}

fn related(a: &str, b: &str) -> bool {
    let within = |x: &str, y: &str| x.is_empty() || y == x || y.starts_with(&format!("{x}::"));
    within(a, b) || within(b, a)
}

/// Edges between files (module paths) of one crate.
fn edges(
    root: &Path,
    library: Option<&str>,
) -> (BTreeMap<String, PathBuf>, BTreeSet<(String, String)>) {
    let mods = modules(root);
    let mut out = BTreeSet::new();
    for (name, file) in &mods {
        if file.file_name().is_some_and(|f| f == "tests.rs") || name.ends_with("::tests") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lib = (name == "main").then_some(library).flatten();
        // A file `a/b.rs` is module `a::b`: `super` is `a`, `self` is `a::b`.
        for p in paths(&product_code(&text), lib) {
            let to = target(&p, name, &mods);
            if !related(name, &to) && mods.contains_key(&to) {
                out.insert((name.clone(), to));
            }
        }
    }
    (mods, out)
}

/// Every import circle (strongly connected set of two or more files).
fn circles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for (a, b) in edges {
                if *a == n && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let group: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[*m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if group.len() > 1 {
            done.extend(group.iter().cloned());
            out.push(group);
        }
    }
    out
}

fn layer_of(module: &str, layers: &[(&str, &[&str])]) -> Option<usize> {
    layers.iter().position(|(_, mods)| {
        mods.iter()
            .any(|m| module == *m || module.starts_with(&format!("{m}::")))
    })
}

fn check(root: &str, library: Option<&str>, layers: &[(&str, &[&str])]) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let (mods, edges) = edges(&dir, library);
    let mut problems = Vec::new();
    for group in circles(&edges) {
        problems.push(format!(
            "{root}: import circle between {}",
            group.join(", ")
        ));
    }
    for name in mods.keys().filter(|m| !m.is_empty()) {
        if layer_of(name, layers).is_none() && !name.ends_with("tests") {
            problems.push(format!("{root}: module {name} is in no layer of ARCHITECTURE.md (add it to LAYERS here too)"));
        }
    }
    for (from, to) in &edges {
        if let (Some(a), Some(b)) = (layer_of(from, layers), layer_of(to, layers)) {
            if b > a {
                problems.push(format!(
                    "{root}: {from} ({}) imports {to} ({}), a layer above it",
                    layers[a].0, layers[b].0
                ));
            }
        }
    }
    problems
}

#[test]
fn no_import_circle_and_no_import_runs_up_a_layer() {
    let mut problems = check("src", Some("persistence_webhook"), LAYERS);
    problems.extend(check("core/src", None, CORE_LAYERS));
    let new: Vec<&String> = problems
        .iter()
        .filter(|p| !NOT_YET.contains(&p.as_str()))
        .collect();
    let gone: Vec<&&str> = NOT_YET
        .iter()
        .filter(|k| !problems.iter().any(|p| p == *k))
        .collect();
    assert!(
        new.is_empty(),
        "imports against ARCHITECTURE.md's map:\n{}",
        new.iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        gone.is_empty(),
        "fixed (remove from NOT_YET):\n{}",
        gone.iter().map(|p| **p).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_checker_sees_a_circle_and_an_upward_import() {
    let edges: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .iter()
        .map(|(x, y)| ((*x).to_owned(), (*y).to_owned()))
        .collect();
    assert_eq!(
        circles(&edges),
        [vec!["a".to_owned(), "b".into(), "c".into()]]
    );
    let mut found = Vec::new();
    expand("crate::{a::B,b::{c,d::E}}", &mut Vec::new(), &mut found);
    assert_eq!(
        found,
        [
            vec!["crate", "a", "B"],
            vec!["crate", "b", "c"],
            vec!["crate", "b", "d", "E"]
        ]
    );
    // A `use` item starts its line (after `pub` or `pub(...)`); a `use`
    // inside a string is words, not an import: only the inline
    // `super::` path is read from it, not the group the braces would give.
    let items = paths(
        "pub use crate::{a::B, c};\npub(crate) use super::d;\n    use self::e;\nuse crate::f as g;\nuse crate::h::{I as J, k};\n",
        None,
    );
    for want in [
        vec!["crate", "a", "B"],
        vec!["crate", "c"],
        vec!["super", "d"],
        vec!["self", "e"],
        vec!["crate", "f"],
        vec!["crate", "h", "I"],
        vec!["crate", "h", "k"],
    ] {
        assert!(items.iter().any(|p| *p == want), "{want:?} in {items:?}");
    }
    assert_eq!(
        paths(
            "let hint = \"rename it, or use super::{a, b} instead\";\n",
            None
        ),
        [vec!["super"]],
        "a `use` in a string is not read as an import"
    );
    let layers: &[(&str, &[&str])] = &[("low", &["a"]), ("high", &["b"])];
    assert_eq!(layer_of("a::x", layers), Some(0));
    assert_eq!(layer_of("b", layers), Some(1));
    assert_eq!(layer_of("c", layers), None);
}
