//! JSON text of a `serde_json::Value` written as any sender may write it:
//! random whitespace between tokens, keys in any order, and characters
//! escaped where they need not be (`\uXXXX` in either case, surrogate
//! pairs, the short escapes), so that a reader can be checked against the
//! plain reading of the same value. Shared by the property tests.

use proptest::prelude::*;
use serde_json::Value;

/// A small deterministic generator of the writer's choices (xorshift).
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// How a text is written.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// The choices' seed (odd: never zero).
    pub seed: u64,
    /// Per mille of characters written escaped when they need not be.
    pub escape: u64,
    /// Whether keys are escaped too (a reader finds a value after a key
    /// as written only when the key has no escapes).
    pub escape_keys: bool,
    /// Per mille of places between tokens that get whitespace.
    pub space: u64,
}

/// Any of a few escape and whitespace densities, with any seed.
pub fn style() -> impl Strategy<Value = Style> {
    (
        any::<u64>(),
        prop_oneof![Just(0), Just(100), Just(500), Just(1000)],
        prop_oneof![Just(0), Just(300)],
        any::<bool>(),
    )
        .prop_map(|(seed, escape, space, escape_keys)| Style {
            seed: seed | 1,
            escape,
            space,
            escape_keys,
        })
}

struct Writer {
    out: String,
    choices: Choices,
    style: Style,
}

impl Writer {
    fn space(&mut self) {
        if self.choices.below(1000) < self.style.space {
            let ws = [" ", "\n", "\t", "\r\n  "];
            self.out.push_str(ws[self.choices.below(4) as usize]);
        }
    }

    fn string(&mut self, s: &str, key: bool) {
        let escape = if key && !self.style.escape_keys {
            0
        } else {
            self.style.escape
        };
        self.out.push('"');
        for c in s.chars() {
            let must = matches!(c, '"' | '\\') || c < ' ';
            if !must && self.choices.below(1000) >= escape {
                self.out.push(c);
                continue;
            }
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '/' => Some("\\/"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                _ => None,
            };
            match short {
                Some(e) if self.choices.below(2) == 0 => self.out.push_str(e),
                _ => {
                    let mut units = [0_u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        let hex = if self.choices.below(2) == 0 {
                            format!("\\u{u:04x}")
                        } else {
                            format!("\\u{u:04X}")
                        };
                        self.out.push_str(&hex);
                    }
                }
            }
        }
        self.out.push('"');
    }

    fn value(&mut self, v: &Value) {
        self.space();
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                // Fisher-Yates: keys in any order.
                for i in (1..entries.len()).rev() {
                    let j = self.choices.below(i as u64 + 1) as usize;
                    entries.swap(i, j);
                }
                self.out.push('{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.space();
                    self.string(k, true);
                    self.space();
                    self.out.push(':');
                    self.value(v);
                }
                self.space();
                self.out.push('}');
            }
            Value::Array(a) => {
                self.out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.value(v);
                }
                self.space();
                self.out.push(']');
            }
            Value::String(s) => self.string(s, false),
            other => self.out.push_str(&other.to_string()),
        }
        self.space();
    }
}

/// `v` as text written in `style`.
pub fn write(v: &Value, style: Style) -> String {
    let mut w = Writer {
        out: String::new(),
        choices: Choices(style.seed),
        style,
    };
    w.value(v);
    w.out
}
