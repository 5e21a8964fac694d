//! User-supplied text as quoted in messages: clipped so that no input,
//! however long or strange, makes a long denial or log line, and numbers
//! written for people; and [`JsonStr`], a string read from JSON without a
//! copy where it can be.

use std::borrow::Cow;

use serde::Deserialize;

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
    // Printable ASCII but the backslash and the quotes escapes to itself:
    // the usual name or path is measured without escaping anything.
    let plain = |c: char| matches!(c, ' '..='~') && !matches!(c, '\\' | '"' | '\'');
    if s.len() <= budget && s.chars().all(plain) {
        return None;
    }
    let mut used = 0;
    for (i, c) in s.char_indices() {
        used += if plain(c) {
            1
        } else {
            c.escape_debug().map(char::len_utf8).sum::<usize>()
        };
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

/// A JSON string as read from a body: borrowed from it unless it had
/// escapes. serde's own `Cow<str>` always copies (unless a derive says
/// `#[serde(borrow)]`), which cost an allocation per object key of a review;
/// read keys and hand-read values through this instead. Its messages are
/// `Cow<str>`'s ("invalid type: ..., expected a string").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonStr<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// For `#[serde(borrow, deserialize_with = "crate::text::optional_str")]`
/// on an `Option<Cow<str>>` field: serde's derive borrows a `Cow<str>`
/// field but not one inside an `Option`, which it copies. Null is `None`.
pub fn optional_str<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<JsonStr<'de>>::deserialize(d)?.map(|s| s.0))
}

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

        // Every ASCII character is measured as `{:?}` escapes it.
        for b in 0_u8..=127 {
            let c = char::from(b);
            let s = c.to_string().repeat(CLIP_BYTES);
            let escaped = c.escape_debug().count();
            let want = (escaped > 1).then_some(CLIP_BYTES / escaped);
            assert_eq!(cut_at(&s, CLIP_BYTES), want, "{c:?}");
        }

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
}
