//! What the kubelet can create as a run's outputs directory: the limits
//! every sub-path rule's result is checked against (SPEC §3, last
//! paragraph), whichever rule produced it.

use crate::text::clip;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
