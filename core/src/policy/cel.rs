//! CEL text: literals, and the expressions the policy repeats wherever it
//! needs them (CEL in Kubernetes has no user functions): the quoting and
//! clipping of user text in messages, Go's `filepath.Clean` of a mount
//! path, the kubelet's sub-path rules, a JSON value as an `Object`
//! initializer and the test that a pod's volume holds ours.
//!
//! Each builder takes the CEL expression of its argument and binds it once
//! with the `[x].map(v, ...)[0]` idiom (Kubernetes' CEL has no `cel.bind`),
//! so an argument is evaluated once however often the body names it.

use serde_json::Value;

use crate::selection::kubelet::{is_invisible, SubPathError, MAX_ELEMENT_BYTES, MAX_PATH_BYTES};
use crate::text::CLIP_BYTES;

/// A CEL string literal holding `s` exactly.
pub(super) fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || is_invisible(c) => {
                let code = u32::from(c);
                if code <= 0xFFFF {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Binds `value` to `var` in `body`: `[value].map(var, body)[0]`.
pub(super) fn bind(var: &str, value: &str, body: &str) -> String {
    format!("[{value}].map({var}, {body})[0]")
}

/// A message the core formats, filled with sentinel arguments
/// ([`sentinel`]), as CEL: each sentinel's text (or its `{:?}` form,
/// quotes included) becomes the CEL expression given for it, in
/// parentheses; the rest stays literal. The message is the webhook's own,
/// so the policy's words cannot drift from it.
pub(super) fn fill(message: &str, holes: &[(String, String)]) -> String {
    splice(message, holes, lit, |expr| format!("({expr})"))
}

/// [`fill`] for the sub-path messages, whose holes are operands of `+`
/// already: each hole's expression as it is, each literal in single
/// quotes unless it holds one.
fn fill_bare(message: &str, holes: &[(String, String)]) -> String {
    let text = |s: &str| {
        if s.contains(['\'', '\\']) {
            lit(s)
        } else {
            format!("'{s}'")
        }
    };
    splice(message, holes, text, str::to_owned)
}

/// `message` cut at each hole's text: the pieces between written by
/// `text`, the holes by `hole`, joined with `+`.
fn splice(
    message: &str,
    holes: &[(String, String)],
    text: impl Fn(&str) -> String,
    hole: impl Fn(&str) -> String,
) -> String {
    let mut parts = Vec::new();
    let mut rest = message;
    loop {
        let next = holes
            .iter()
            .filter_map(|(at, expr)| rest.find(at.as_str()).map(|i| (i, at, expr)))
            .min_by_key(|(i, _, _)| *i);
        match next {
            None => {
                if !rest.is_empty() {
                    parts.push(text(rest));
                }
                break;
            }
            Some((i, at, expr)) => {
                if i > 0 {
                    parts.push(text(&rest[..i]));
                }
                parts.push(hole(expr));
                rest = &rest[i + at.len()..];
            }
        }
    }
    parts.join(" + ")
}

/// The sentinel of hole `i`, and its `{:?}` form.
pub(super) fn sentinel(i: u8) -> (String, String) {
    let s = format!("\u{1}{i}\u{1}");
    let debug = format!("{s:?}");
    (s, debug)
}

/// The sentinel of a numeric hole (a byte count, an offset): no message
/// holds this number otherwise.
pub(super) const NUMBER: usize = usize::MAX;

/// [`NUMBER`] as the message writes it.
fn number_hole() -> String {
    NUMBER.to_string()
}

/// The user text `expr` as the webhook quotes it (`{:?}` of
/// [`clip`](crate::text::clip)): each character Rust's `Debug` escapes
/// among `"`, `\\`, the control characters and the invisible ones written
/// as Rust writes it, the text cut where its escaped form passes
/// [`CLIP_BYTES`] and followed by `... (<n> bytes)`, all in double quotes.
/// (Other characters Rust escapes, unassigned code points and combining
/// marks, are kept raw.)
pub(super) fn quote_clip(expr: &str, var: &str) -> String {
    let budget = CLIP_BYTES;
    let n = budget + 1;
    let class = "variables.escClass";
    let escapes = "variables.esc";
    let escaped = |x: &str| {
        format!(
            "({x}.matches({class}) ? {x}.split('').map(ch, ch in {escapes} ? {escapes}[ch] : ch).join('') : {x})"
        )
    };
    // A text of more bytes than the budget is cut (escaping only adds):
    // then only its first budget + 1 characters are measured, each by the
    // length of its escape, so the cost is bounded whatever the text.
    let body = format!(
        "bytes({var}).size() <= {budget} && bytes({whole}).size() <= {budget} ? '\"' + {whole} + '\"' : \
         '\"' + [{var}.substring(0, {var}.size() > {n} ? {n} : {var}.size())].map(t, [[t.split('').map(ch, bytes(ch in {escapes} ? {escapes}[ch] : ch).size())].map(lens, lists.range(lens.size()).filter(k, lens.slice(0, k + 1).sum() > {budget})[0])[0]].map(cut, {cut_escaped})[0])[0] + '... (' + string(bytes({var}).size()) + ' bytes)\"'",
        whole = escaped(var),
        cut_escaped = escaped("t.substring(0, cut)"),
    );
    bind(var, expr, &body)
}

/// The characters Rust's `Debug` of a string escapes that the policy
/// writes as Rust does: `"`, `\\`, C0, DEL, C1 and the invisible ones.
fn debug_chars() -> Vec<char> {
    let mut chars: Vec<char> = ['"', '\\']
        .into_iter()
        .chain((0..0x20).chain(0x7F..0xA0).filter_map(char::from_u32))
        .collect();
    for (lo, hi) in invisible_ranges() {
        chars.extend((lo..=hi).filter_map(char::from_u32));
    }
    chars
}

/// [`debug_chars`] as one RE2 class of ranges (the policy's variable
/// `escClass`).
pub(super) fn debug_class() -> String {
    let mut codes: Vec<u32> = debug_chars().into_iter().map(u32::from).collect();
    codes.sort_unstable();
    let mut class = String::from("[");
    push_ranges(&mut class, &ranges_of(codes));
    class.push(']');
    class
}

/// The map from each of [`debug_chars`] to its escape, as Rust writes it
/// (the policy's variable `esc`).
pub(super) fn debug_escapes() -> String {
    let entries: Vec<String> = debug_chars()
        .into_iter()
        .map(|c| {
            let quoted = format!("{:?}", c.to_string());
            format!(
                "{}: {}",
                lit(&c.to_string()),
                lit(&quoted[1..quoted.len() - 1])
            )
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// Go's `filepath.Clean` of a container's mount path, relative to the
/// container's root as the runtime takes it (the webhook's
/// [`clean_path`](crate::names::clean_path)). A path without `..` costs a
/// split; one with `..` keeps each segment no later `..` cancels.
pub(super) fn clean(expr: &str, var: &str) -> String {
    let segs = format!("('/' + {var}).split('/').filter(s, s != '' && s != '.')");
    // A segment k survives when it is not `..` and no j > k has more `..`
    // than other segments among k+1..=j.
    let survivors = format!(
        "{segs}.transformList(k, s, s != '..' && !lists.range({segs}.size()).exists(j, j > k && \
         {segs}.slice(k + 1, j + 1).filter(x, x == '..').size() * 2 > j - k), s)"
    );
    let body = format!(
        "!{segs}.exists(s, s == '..') ? '/' + {segs}.join('/') : '/' + {survivors}.join('/')"
    );
    bind(var, expr, &body)
}

/// Every character the kubelet rules refuse in a sub-path, as one RE2 class
/// (a backslash, a C0 or C1 control character, an invisible or
/// bidirectional-control character).
fn bad_char_class() -> String {
    let mut class = String::from(r"[\\\x00-\x1f\x7f-\x9f");
    push_ranges(&mut class, &invisible_ranges());
    class.push(']');
    class
}

/// Appends each range to an RE2 class, as `\x{A}` or `\x{A}-\x{B}`.
fn push_ranges(class: &mut String, ranges: &[(u32, u32)]) {
    for &(lo, hi) in ranges {
        if lo == hi {
            class.push_str(&format!("\\x{{{lo:X}}}"));
        } else {
            class.push_str(&format!("\\x{{{lo:X}}}-\\x{{{hi:X}}}"));
        }
    }
}

/// Ascending code points as inclusive ranges of consecutive ones.
fn ranges_of(codes: impl IntoIterator<Item = u32>) -> Vec<(u32, u32)> {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for code in codes {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == code => *hi = code,
            _ => ranges.push((code, code)),
        }
    }
    ranges
}

/// The ranges of [`is_invisible`], read from the function itself (every
/// character it names lies below U+E0200).
fn invisible_ranges() -> Vec<(u32, u32)> {
    ranges_of((0..0xE0200_u32).filter(|&code| char::from_u32(code).is_some_and(is_invisible)))
}

/// The map from each invisible character to its code as the webhook
/// writes it (`U+200B`), for the message (the policy's variable
/// `invCodes`).
pub(super) fn invisible_codes() -> String {
    let mut entries = Vec::new();
    for (lo, hi) in invisible_ranges() {
        for code in lo..=hi {
            let c = char::from_u32(code).expect("the ranges hold chars");
            entries.push(format!("{}: '{code:04X}'", lit(&c.to_string())));
        }
    }
    format!("{{{}}}", entries.join(", "))
}

/// What is wrong with the sub-path `expr` (the core's
/// [`SubPathError`] messages, completing "sub-path `<p>` ..."), or `''`.
/// `base` is the CEL expression of the store's path without its trailing
/// `/`, `base_debug` that of its `{:?}` form for the length message.
pub(super) fn sub_path_problem(expr: &str, base: &str, base_debug: &str) -> String {
    let bad = lit(&bad_char_class());
    let at = || {
        (
            number_hole(),
            "string(bytes(p.substring(0, p.indexOf(c))).size())".to_owned(),
        )
    };
    let message = |e: SubPathError, holes: &[(String, String)]| fill_bare(&e.to_string(), holes);
    let chars = format!(
        "[p.find({bad})].map(c, c == '\\\\' ? {backslash} : \
         c.matches(r'^[\\x00-\\x1f\\x7f-\\x9f]$') ? {control} : \
         {invisible})[0]",
        backslash = message(SubPathError::Backslash { at: NUMBER }, &[at()]),
        control = message(SubPathError::Control, &[]),
        invisible = message(
            SubPathError::Invisible {
                code: u32::MAX,
                at: NUMBER,
            },
            &[
                (
                    format!("{:04X}", u32::MAX),
                    "variables.invCodes[c]".to_owned()
                ),
                at(),
            ]
        ),
    );
    let (element_raw, element_debug) = sentinel(0);
    let element_too_long = message(
        SubPathError::ElementTooLong {
            element: element_raw,
            bytes: NUMBER,
        },
        &[
            (number_hole(), "string(bytes(bad[0]).size())".to_owned()),
            (element_debug, quote_clip("bad[0]", "e")),
        ],
    );
    let segments = format!(
        "[p.split('/').filter(s, s == '' || s == '.' || s == '..' || bytes(s).size() > {MAX_ELEMENT_BYTES})].map(bad, bad.size() == 0 ? '' : \
         bad[0] == '' ? {empty_segment} : \
         bad[0] == '.' || bad[0] == '..' ? {dot_segment} : \
         {element_too_long})[0]",
        empty_segment = message(SubPathError::EmptySegment, &[]),
        dot_segment = message(SubPathError::DotSegment, &[]),
    );
    let too_long = too_long("p", base, base_debug);
    let body = format!(
        "p == '' ? {empty} : p.startsWith('/') ? {absolute} : \
         p.matches({bad}) ? {chars} : [{segments}].map(w, w != '' ? w : {too_long})[0]",
        empty = message(SubPathError::Empty, &[]),
        absolute = message(SubPathError::Absolute, &[]),
    );
    bind("p", expr, &body)
}

/// The length rule alone (the core's [`SubPathError::TooLong`] or `''`)
/// on the sub-path bound to `var`.
pub(super) fn too_long(var: &str, base: &str, base_debug: &str) -> String {
    let bytes = format!("(bytes({base}).size() + 1 + bytes({var}).size())");
    let (base_raw, base_raw_debug) = sentinel(0);
    let message = fill_bare(
        &SubPathError::TooLong {
            base: base_raw,
            bytes: NUMBER,
        }
        .to_string(),
        &[
            (number_hole(), format!("string({bytes})")),
            (base_raw_debug, base_debug.to_owned()),
        ],
    );
    format!("{bytes} > {MAX_PATH_BYTES} ? {message} : ''")
}

/// A JSON value as a CEL value for a JSON Patch: objects become `Object`
/// initializers named by their field path (`type_name`), lists keep their
/// items' path. `name` replaces the value of a top-level `name` field (the
/// volume name chosen per pod).
pub(super) fn object(value: &Value, type_name: &str, name: Option<&str>) -> String {
    match value {
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), name) {
                        ("name", Some(name)) => name.to_owned(),
                        _ => object(v, &format!("{type_name}.{k}"), None),
                    };
                    format!("{k}: {v}")
                })
                .collect();
            format!("{type_name}{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| object(i, type_name, None)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(s) => lit(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".to_owned(),
    }
}

/// Whether the pod's item bound to `var` holds everything in `ours` (the
/// webhook's [`covers`](crate::patch::covers)): our fields present with our
/// values, lists of the same length item by item, extra fields allowed.
/// The top-level `name` is left out: the caller looks the item up by name.
pub(super) fn covers(var: &str, ours: &Value, top: bool) -> String {
    match ours {
        Value::Object(map) => {
            let mut parts = vec!["true".to_owned()];
            for (k, v) in map {
                if top && k == "name" {
                    continue;
                }
                let field = format!("{var}.{k}");
                parts.push(format!("has({field})"));
                parts.push(covers(&field, v, false));
            }
            parts.join(" && ")
        }
        Value::Array(items) => {
            let mut parts = vec![format!("{var}.size() == {}", items.len())];
            for (i, item) in items.iter().enumerate() {
                parts.push(covers(&format!("{var}[{i}]"), item, false));
            }
            parts.join(" && ")
        }
        Value::String(s) => format!("{var} == {}", lit(s)),
        Value::Bool(b) => format!("{var} == {b}"),
        Value::Number(n) => format!("{var} == {n}"),
        Value::Null => format!("{var} == null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_escape_what_cel_needs() {
        assert_eq!(lit(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(lit("x\u{7}y"), r#""x\u0007y""#);
        assert_eq!(lit("z\u{200B}"), r#""z\u200b""#);
        assert_eq!(lit("\u{E0041}"), r#""\U000e0041""#);
        assert_eq!(lit("ünï"), "\"ünï\"");
    }

    #[test]
    fn invisible_ranges_match_the_webhook() {
        let ranges = invisible_ranges();
        assert!(ranges.contains(&(0x200B, 0x200F)), "{ranges:?}");
        assert!(ranges.contains(&(0xE0100, 0xE01EF)), "{ranges:?}");
        let count: u32 = ranges.iter().map(|(lo, hi)| hi - lo + 1).sum();
        assert!(count > 400 && count < 500, "{count}");
    }

    #[test]
    fn objects_and_covers() {
        let v = json!({"name": "pw-x", "secret": {"secretName": "s", "items": [{"key": "k", "path": "k"}]}});
        assert_eq!(
            object(&v, "Object.spec.volumes", Some("variables.vn0")),
            r#"Object.spec.volumes{name: variables.vn0, secret: Object.spec.volumes.secret{items: [Object.spec.volumes.secret.items{key: "k", path: "k"}], secretName: "s"}}"#
        );
        assert_eq!(
            covers("v", &v, true),
            r#"true && has(v.secret) && true && has(v.secret.items) && v.secret.items.size() == 1 && true && has(v.secret.items[0].key) && v.secret.items[0].key == "k" && has(v.secret.items[0].path) && v.secret.items[0].path == "k" && has(v.secret.secretName) && v.secret.secretName == "s""#
        );
        assert_eq!(
            covers("v", &json!({"name": "pw-e", "emptyDir": {}}), true),
            "true && has(v.emptyDir) && true"
        );
    }
}
