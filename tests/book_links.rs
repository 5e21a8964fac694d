//! The documentation book's links: every relative link and `#anchor` between
//! the pages of `docs/src/` (the mdBook) and from `README.md` into the book
//! resolves, and every page is in `docs/src/SUMMARY.md`.
//!
//! mdBook's own build does not fail on a broken link, so `.ci/run` runs this
//! after `mdbook build docs`. Anchors are computed as mdBook generates them
//! (lowercase; whitespace to `-`; only letters, digits, `_` and `-` kept; a
//! repeated heading gets `-1`, `-2`, ...). Links to files of the repository
//! outside the book must name a file or folder that exists; `http(s):` and
//! `mailto:` links are not fetched. Text inside code blocks and code spans is
//! not a link.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `a/b/../c` -> `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The text of a page as mdBook sees it: `{{#include FILE}}` lines replaced
/// by that file (a path relative to the page).
fn page_text(path: &Path) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let dir = path.parent().expect("a page has a folder");
    text.lines()
        .map(|line| {
            match line
                .trim()
                .strip_prefix("{{#include ")
                .and_then(|rest| rest.strip_suffix("}}"))
            {
                Some(file) => {
                    let included = normalize(&dir.join(file.trim()));
                    std::fs::read_to_string(&included).unwrap_or_else(|e| {
                        panic!("{}: includes {}: {e}", path.display(), included.display())
                    })
                }
                None => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines outside fenced code blocks, with their line numbers (1-based).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(*m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// A line without its code spans (`...`).
fn without_code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect()
}

/// The targets of the inline links `[text](target)` and images of a line.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after
            .find(|c: char| c == ')' || c.is_whitespace())
            .unwrap_or(after.len());
        let target = after[..end].trim_start_matches('<').trim_end_matches('>');
        if !target.is_empty() {
            targets.push(target.to_owned());
        }
        rest = &after[end..];
    }
    targets
}

/// mdBook's id for a heading's text (mdbook-html's `id_from_content`).
fn id_from_content(content: &str) -> String {
    content
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// The text a heading renders: code spans keep their content, links their
/// text, emphasis markers go.
fn heading_text(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // [label](target) -> label
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|c| open + c) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|e| close + e) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.replace(['`', '*'], "")
}

/// The anchors of a page's headings, as mdBook makes them unique.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let id = id_from_content(&heading_text(&line[hashes..]));
        let mut unique = id.clone();
        let mut n = 0;
        while !used.insert(unique.clone()) {
            n += 1;
            unique = format!("{id}-{n}");
        }
    }
    used
}

/// Every problem with the links of `pages` (paths relative to `root`).
fn broken_links(root: &Path, pages: &[PathBuf]) -> Vec<String> {
    let mut texts: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut text_of = |path: &Path| -> String {
        texts
            .entry(path.to_owned())
            .or_insert_with(|| page_text(&root.join(path)))
            .clone()
    };
    let mut problems = Vec::new();
    for page in pages {
        let text = text_of(page);
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if ["http:", "https:", "mailto:"]
                    .iter()
                    .any(|s| target.starts_with(s))
                {
                    continue;
                }
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if file.is_empty() {
                    page.clone()
                } else {
                    normalize(&page.parent().expect("a folder").join(file))
                };
                let at = format!("{}:{n}: [..]({target})", page.display());
                if !root.join(&resolved).exists() {
                    problems.push(format!("{at}: no file {}", resolved.display()));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if resolved.extension().is_none_or(|e| e != "md") {
                    continue;
                }
                let target_text = text_of(&resolved);
                if !anchors(&target_text).contains(anchor) {
                    problems.push(format!(
                        "{at}: {} has no heading with the anchor #{anchor}",
                        resolved.display()
                    ));
                }
            }
        }
    }
    problems
}

/// The book's pages, relative to the repository's root.
fn book_pages(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a folder of the book") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("docs/src"), &mut out);
    let mut pages: Vec<PathBuf> = out
        .into_iter()
        .map(|p| p.strip_prefix(root).expect("under the root").to_owned())
        .collect();
    pages.sort();
    pages
}

#[test]
fn every_link_of_the_book_and_the_readme_resolves() {
    let root = root();
    let mut pages = book_pages(&root);
    assert!(pages.len() > 20, "the book has {} pages", pages.len());
    pages.insert(0, PathBuf::from("README.md"));
    let problems = broken_links(&root, &pages);
    assert!(
        problems.is_empty(),
        "{} broken link(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_page_is_in_the_summary() {
    let root = root();
    let summary = std::fs::read_to_string(root.join("docs/src/SUMMARY.md")).expect("SUMMARY.md");
    let listed: BTreeSet<String> = prose_lines(&summary)
        .into_iter()
        .flat_map(|(_, l)| link_targets(l))
        .collect();
    let missing: Vec<String> = book_pages(&root)
        .iter()
        .map(|p| {
            p.strip_prefix("docs/src")
                .expect("in the book")
                .to_string_lossy()
                .into_owned()
        })
        .filter(|p| p != "SUMMARY.md" && !listed.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "pages not in docs/src/SUMMARY.md: {missing:?}"
    );
}

#[test]
fn the_checker_finds_what_it_should() {
    assert_eq!(
        id_from_content(&heading_text(
            "Running the server: `persistence-webhook serve`"
        )),
        "running-the-server-persistence-webhook-serve"
    );
    assert_eq!(
        id_from_content(&heading_text("`serve --certificates in-cluster`")),
        "serve---certificates-in-cluster"
    );
    let text = "# A\n\n```sh\n# not a heading\n```\n\n## A\n\nsee [x](#a-1) and `[y](#no)`\n";
    assert_eq!(
        anchors(text),
        BTreeSet::from(["a".to_owned(), "a-1".to_owned()])
    );
    assert_eq!(
        link_targets("see [x](#a-1) and `[y](#no)`, ![i](p.png \"t\")"),
        ["#a-1", "p.png"]
    );
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(
        dir.path().join("a.md"),
        "# Here\n\n[ok](#here) [bad](#there) [gone](b.md)\n",
    )
    .expect("a page");
    let problems = broken_links(dir.path(), &[PathBuf::from("a.md")]);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("#there"), "{problems:?}");
    assert!(problems[1].contains("no file b.md"), "{problems:?}");
}
