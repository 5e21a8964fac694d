//! Kubernetes and filesystem name rules the config and the selection check,
//! and the deterministic names the webhook gives the things it adds.

use crate::vocabulary::VOLUME_PREFIX;

/// A DNS-1123 label: lowercase alphanumerics and `-`, alphanumeric at both
/// ends, at most 63 characters (namespaces, store names, volume names).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters
/// (Secret and PersistentVolumeClaim names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A name Kubernetes accepts for a container env var.
pub fn is_env_name(s: &str) -> bool {
    // As Kubernetes' IsEnvVarName: also never ".", "..", or "..name".
    if s == "." || s.starts_with("..") {
        return false;
    }
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(c) if c.is_ascii_digit() => false,
        Some(_) => s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')),
        None => false,
    }
}

/// Checks an absolute mount path and drops one trailing `/`, so that `/d`
/// and `/d/` are the same path. The error completes "`<path>` ...".
pub fn normalise_mount_path(path: &str) -> Result<String, &'static str> {
    let trimmed = match path.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => path,
    };
    if !trimmed.starts_with('/') {
        return Err("must be an absolute path");
    }
    if trimmed == "/" {
        return Err("cannot be the root directory");
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    for segment in trimmed[1..].split('/') {
        match segment {
            "" => return Err("must not contain empty segments ('//')"),
            "." | ".." => return Err("must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(trimmed.to_owned())
}

/// Longest path element the kubelet can create: Linux's `NAME_MAX`.
pub const MAX_ELEMENT_BYTES: usize = 255;
/// Longest mount path the kubelet can create: Linux's `PATH_MAX`.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a run's outputs sub-path cannot be used. Each message completes
/// "sub-path `<p>` ..." and says what the kubelet or the rules need.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubPathError {
    /// `""`.
    #[error("is empty")]
    Empty,
    /// `/abs`.
    #[error("must be relative (it starts with '/')")]
    Absolute,
    /// A C0/C1 control character.
    #[error("must not contain control characters")]
    Control,
    /// `a//b` or `a/`.
    #[error("must not contain empty segments ('//' or a trailing '/')")]
    EmptySegment,
    /// `a/./b` or `../x`.
    #[error("must not contain '.' or '..' segments")]
    DotSegment,
    /// `a\b`: a separator on Windows nodes, an escape to many tools.
    #[error("must not contain a backslash (at byte {at}): Windows nodes read it as a separator and it is an escape character to most tools")]
    Backslash {
        /// Byte offset in the sub-path.
        at: usize,
    },
    /// A character that shows as nothing, or reorders what follows it.
    #[error("must not contain the invisible or bidirectional-control character U+{code:04X} (at byte {at}): two directories that differ only by it look the same")]
    Invisible {
        /// The character's code point.
        code: u32,
        /// Byte offset in the sub-path.
        at: usize,
    },
    /// One element longer than `NAME_MAX`.
    #[error("has an element of {bytes} bytes ({element:?}), over the limit of {MAX_ELEMENT_BYTES} bytes per path element that the kubelet can create")]
    ElementTooLong {
        /// The element, clipped.
        element: String,
        /// Its length.
        bytes: usize,
    },
    /// The whole mount path (or bucket path) longer than `PATH_MAX`.
    #[error("makes the path {bytes} bytes long ({base:?} + '/' + the sub-path), over the limit of {MAX_PATH_BYTES} bytes that the kubelet can create")]
    TooLong {
        /// The store's mount path or bucket, clipped.
        base: String,
        /// Length of `<base>/<sub-path>`.
        bytes: usize,
    },
}

/// Checks a run's outputs sub-path, to be joined to `base` (the store's
/// mount path or bucket) with one `/`: relative, no empty, `.` or `..`
/// segments, and one the kubelet can create (SPEC §3): each element at most
/// [`MAX_ELEMENT_BYTES`], the joined path at most [`MAX_PATH_BYTES`], no
/// control, invisible or bidirectional-control character, no backslash.
pub fn check_sub_path(path: &str, base: &str) -> Result<(), SubPathError> {
    if path.is_empty() {
        return Err(SubPathError::Empty);
    }
    if path.starts_with('/') {
        return Err(SubPathError::Absolute);
    }
    for (at, c) in path.char_indices() {
        if c == '\\' {
            return Err(SubPathError::Backslash { at });
        }
        if c.is_ascii() {
            // The common case: every invisible character is outside ASCII.
            if c.is_ascii_control() {
                return Err(SubPathError::Control);
            }
            continue;
        }
        if c.is_control() {
            return Err(SubPathError::Control);
        }
        if is_invisible(c) {
            return Err(SubPathError::Invisible {
                code: u32::from(c),
                at,
            });
        }
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(SubPathError::EmptySegment),
            "." | ".." => return Err(SubPathError::DotSegment),
            s if s.len() > MAX_ELEMENT_BYTES => {
                return Err(SubPathError::ElementTooLong {
                    element: clip(s),
                    bytes: s.len(),
                })
            }
            _ => {}
        }
    }
    let base = base.trim_end_matches('/');
    let bytes = base.len() + 1 + path.len();
    if bytes > MAX_PATH_BYTES {
        return Err(SubPathError::TooLong {
            base: clip(base),
            bytes,
        });
    }
    Ok(())
}

/// Characters that render as nothing or change the direction of the text
/// around them, so that a directory name containing one looks like another
/// (Trojan Source, CVE-2021-42574): every Unicode format character (Cf) in
/// use, the line and paragraph separators, and the fillers and selectors
/// that display as blank.
pub fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD                      // soft hyphen
        | 0x034F                    // combining grapheme joiner
        | 0x0600..=0x0605           // Arabic number signs (Cf)
        | 0x061C                    // Arabic letter mark
        | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x115F | 0x1160           // Hangul fillers
        | 0x17B4 | 0x17B5           // Khmer inherent vowels
        | 0x180B..=0x180F           // Mongolian selectors and vowel separator
        | 0x200B..=0x200F           // zero-width space/joiners, LRM, RLM
        | 0x2028..=0x202E           // line/paragraph separators, embeddings, overrides
        | 0x2060..=0x2064           // word joiner, invisible operators
        | 0x2066..=0x206F           // isolates, deprecated format characters
        | 0x3164                    // Hangul filler
        | 0xFE00..=0xFE0F           // variation selectors
        | 0xFEFF                    // zero-width no-break space (BOM)
        | 0xFFA0                    // halfwidth Hangul filler
        | 0xFFF9..=0xFFFB           // interlinear annotation
        | 0x110BD | 0x110CD
        | 0x13430..=0x1343F         // Egyptian format controls
        | 0x1BCA0..=0x1BCA3         // shorthand format controls
        | 0x1D173..=0x1D17A         // musical format controls
        | 0xE0001 | 0xE0020..=0xE007F // tags
        | 0xE0100..=0xE01EF         // variation selectors supplement
    )
}

/// Longest user-supplied string quoted in a message, in bytes once escaped
/// as `{:?}` escapes it.
pub const CLIP_BYTES: usize = 160;
/// Most items of a list shown in a message.
pub const CLIP_ITEMS: usize = 20;
/// Most bytes of a list shown in a message.
pub const CLIP_LIST_BYTES: usize = 480;

/// A user-supplied name or path as quoted in a message (with `{:?}`): long
/// ones are cut, so a 256 KiB annotation does not come back as a 256 KiB
/// error. The budget counts the escaped form, so a string of control
/// characters cannot grow tenfold when quoted.
pub fn clip(s: &str) -> String {
    match cut_at(s, CLIP_BYTES) {
        None => s.to_owned(),
        Some(cut) => format!("{}... ({} bytes)", &s[..cut], s.len()),
    }
}

/// Where to cut `s` so that its escaped form fits `budget`; `None` if it all fits.
fn cut_at(s: &str, budget: usize) -> Option<usize> {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += c.escape_debug().map(char::len_utf8).sum::<usize>();
        if used > budget {
            return Some(i);
        }
    }
    None
}

/// A list of user-supplied names for a message, unquoted, each escaped and
/// clipped: at most [`CLIP_ITEMS`] items and about [`CLIP_LIST_BYTES`], then
/// "and N more" (`total` is the list's full length, so the caller need not
/// walk the rest). "none" when empty.
pub fn clip_list<'a>(items: impl IntoIterator<Item = &'a str>, total: usize) -> String {
    const ITEM_BYTES: usize = 64;
    let mut out = String::new();
    let mut shown = 0;
    for item in items {
        if shown == CLIP_ITEMS || out.len() >= CLIP_LIST_BYTES {
            break;
        }
        if shown > 0 {
            out.push_str(", ");
        }
        let escaped: String = match cut_at(item, ITEM_BYTES) {
            None => item.escape_debug().collect(),
            Some(cut) => format!("{}...", item[..cut].escape_debug()),
        };
        out.push_str(&escaped);
        shown += 1;
    }
    if shown == 0 {
        return "none".to_owned();
    }
    if total > shown {
        out.push_str(&format!(" and {} more", thousands((total - shown) as u64)));
    }
    out
}

/// `25005` as `25,005`, for the numbers in messages.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A byte count in messages: `512 bytes`, `12.5 KiB`, `9.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    // Precision is irrelevant here: these are sizes quoted to a person.
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n < 1024 {
        format!("{n} bytes")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else if f < KIB * KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else {
        format!("{:.1} GiB", f / (KIB * KIB * KIB))
    }
}

/// The pod volume name for a store: `pw-<store>`, or, when that would pass
/// the 63-character limit, a truncated name with a hash of the whole one.
pub fn volume_name(store: &str) -> String {
    let full = format!("{VOLUME_PREFIX}{store}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: tiny, stable across releases and platforms (unlike std's hasher).
    let hash = store.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    // Store names are ASCII once validated; cut on a char boundary anyway,
    // so that no input can make this panic.
    let mut cut = 54;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = full[..cut].trim_end_matches('-');
    format!("{head}-{hash:08x}")
}

/// A mount path as the kubelet resolves it (Go's `filepath.Clean` on an
/// absolute path): repeated `/` collapsed, `.` dropped, `..` applied, no
/// trailing `/`. Borrowed when already clean, which is the common case.
pub fn clean_path(path: &str) -> std::borrow::Cow<'_, str> {
    let dirty = path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
        || (path.len() > 1 && path.ends_with('/'));
    if !dirty {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let prefix = if path.starts_with('/') { "/" } else { "" };
    std::borrow::Cow::Owned(format!("{prefix}{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::GCS_CREDENTIALS_VOLUME;

    #[test]
    fn labels_and_subdomains() {
        for good in ["a", "data-1", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(is_dns1123_subdomain("my.secret-1"));
        assert!(!is_dns1123_subdomain("my..secret"));
        assert!(!is_dns1123_subdomain("My"));
    }

    #[test]
    fn env_names() {
        for good in ["gcs-key.json", "_X", "A1", "a.b-c_d"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "1a", "a b", "a=b", "é", ".", "..", "..key"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn mount_paths() {
        assert_eq!(normalise_mount_path("/data/1/"), Ok("/data/1".into()));
        assert_eq!(normalise_mount_path("/data"), Ok("/data".into()));
        for bad in ["", "/", "//", "data", "/a//b", "/a/./b", "/a/..", "/a\nb"] {
            assert!(normalise_mount_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sub_paths() {
        for good in [
            "a",
            "user/project/experiments/42",
            "ns/pod-x",
            "ünï/~code",
            &"e".repeat(255),
        ] {
            assert_eq!(check_sub_path(good, "/o"), Ok(()), "{good}");
        }
        let long = "e".repeat(256);
        let cases: Vec<(String, &str, &str)> = vec![
            ("".into(), "/o", "is empty"),
            ("/abs".into(), "/o", "must be relative"),
            ("a//b".into(), "/o", "empty segments"),
            ("a/".into(), "/o", "empty segments"),
            ("../x".into(), "/o", "'.' or '..'"),
            ("a/./b".into(), "/o", "'.' or '..'"),
            ("a\u{7}b".into(), "/o", "control characters"),
            ("a\tb".into(), "/o", "control characters"),
            ("a\u{85}b".into(), "/o", "control characters"),
            ("run\\7".into(), "/o", "backslash (at byte 3)"),
            ("a\u{200B}b".into(), "/o", "U+200B (at byte 1)"),
            ("\u{202E}gpj.exe".into(), "/o", "U+202E (at byte 0)"),
            ("x\u{2066}".into(), "/o", "U+2066"),
            ("\u{FEFF}x".into(), "/o", "U+FEFF"),
            ("soft\u{AD}hyphen".into(), "/o", "U+00AD"),
            ("a\u{61C}".into(), "/o", "U+061C"),
            ("a\u{180E}".into(), "/o", "U+180E"),
            ("a\u{E0041}".into(), "/o", "U+E0041"),
            (
                format!("ok/{long}"),
                "/o",
                "has an element of 256 bytes (\"eeee",
            ),
            (
                format!("ok/{long}"),
                "/o",
                "over the limit of 255 bytes per path element",
            ),
            (
                ["d"; 2100].join("/"),
                "/outputs/1",
                "makes the path 4210 bytes long (\"/outputs/1\" + '/' + the sub-path), over the limit of 4096 bytes",
            ),
        ];
        for (bad, base, want) in cases {
            let err = check_sub_path(&bad, base).expect_err(&bad).to_string();
            assert!(err.contains(want), "{bad:?}: {err}");
            assert!(err.len() < 600, "{bad:?}: {} bytes", err.len());
        }
        // Exactly at the limit is fine: "/o" + "/" + 4093 bytes.
        let at_limit = ["d"; 2047].join("/");
        assert_eq!(2 + 1 + at_limit.len(), 4096);
        assert_eq!(check_sub_path(&at_limit, "/o"), Ok(()));
        assert!(check_sub_path(&format!("{at_limit}d"), "/o").is_err());
    }

    #[test]
    fn invisible_characters() {
        for c in [
            '\u{AD}', '\u{200D}', '\u{202A}', '\u{2069}', '\u{FEFF}', '\u{3164}',
        ] {
            assert!(is_invisible(c), "{:04X}", u32::from(c));
        }
        for c in ['a', 'é', '€', '日', ' ', '~', '\u{A0}'] {
            assert!(!is_invisible(c), "{:04X}", u32::from(c));
        }
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("short"), "short");
        let long = clip(&"x".repeat(300_000));
        assert!(long.ends_with("... (300000 bytes)"), "{long}");
        assert!(long.len() < CLIP_BYTES + 30, "{}", long.len());
        // Escaping counts: 10,000 control characters stay small when quoted.
        let quoted = format!("{:?}", clip(&"\u{1b}".repeat(10_000)));
        assert!(quoted.len() < CLIP_BYTES + 40, "{}", quoted.len());
        // Multi-byte characters are never split.
        let euros = clip(&"€".repeat(1_000));
        assert!(
            euros.starts_with('€') && euros.ends_with("(3000 bytes)"),
            "{euros}"
        );

        assert_eq!(clip_list(["main", "init"], 2), "main, init");
        assert_eq!(clip_list([], 0), "none");
        let names: Vec<String> = (0..5_000).map(|i| format!("c-{i}")).collect();
        let list = clip_list(names.iter().map(String::as_str), names.len());
        assert!(list.starts_with("c-0, c-1, "), "{list}");
        assert!(list.ends_with(", c-19 and 4,980 more"), "{list}");
        let huge: Vec<String> = (0..50)
            .map(|i| format!("{i}{}", "n".repeat(10_000)))
            .collect();
        let list = clip_list(huge.iter().map(String::as_str), huge.len());
        assert!(list.len() < CLIP_LIST_BYTES + 120, "{}", list.len());
        assert!(list.ends_with(" more"), "{list}");
        assert_eq!(clip_list(["a\nb"], 1), "a\\nb", "newlines escaped");
    }

    #[test]
    fn numbers_for_people() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (25_005, "25,005"),
            (1_048_576, "1,048,576"),
        ] {
            assert_eq!(thousands(n), want);
        }
        for (n, want) in [
            (512, "512 bytes"),
            (1_536, "1.5 KiB"),
            (9_751_756, "9.3 MiB"),
        ] {
            assert_eq!(human_bytes(n), want);
        }
    }

    #[test]
    fn clean_paths() {
        for (dirty, clean) in [
            ("/scratch", "/scratch"),
            ("/scratch/", "/scratch"),
            ("/scratch//", "/scratch"),
            ("//scratch/./a/", "/scratch/a"),
            ("/a/b/../c", "/a/c"),
            ("/a/..", "/"),
            ("/", "/"),
        ] {
            assert_eq!(clean_path(dirty), clean, "{dirty}");
        }
    }

    #[test]
    fn volume_names_never_split_a_character() {
        // Regression (fuzz: config_yaml-non-ascii-long-store-name).
        let name = volume_name(&format!("a{}", "€".repeat(20)));
        assert!(name.len() <= 63, "{name}");
    }

    #[test]
    fn volume_names_fit_and_differ() {
        assert_eq!(volume_name("data1"), "pw-data1");
        let a = volume_name(&format!("{}a", "x".repeat(62)));
        let b = volume_name(&format!("{}b", "x".repeat(62)));
        assert!(a.len() <= 63 && is_dns1123_label(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(volume_name(&"x".repeat(60)).len(), 63);
        assert!(!is_dns1123_label(
            GCS_CREDENTIALS_VOLUME.trim_start_matches(VOLUME_PREFIX)
        ));
    }
}
