//! The JSON Patch as bytes: the operations written straight into one
//! buffer, never built as `serde_json::Value` operations first; the
//! response is then made of that same buffer, the patch base64-encoded in
//! place ([`PatchJson::into_response`]), so a review holds its patch once.
//!
//! The bytes are those serde_json gives for the same `json_patch::Patch`
//! of values (`{"op":"add","path":..,"value":..}`, map keys sorted, no
//! spaces): the golden fixtures pin them and the property tests check that
//! every patch is its own canonical serialisation.

use std::fmt;
use std::ops::Range;
use std::sync::{LazyLock, OnceLock};

use base64::engine::general_purpose::{PAD, STANDARD};
use base64::engine::simd::Simd;
use base64::Engine as _;
use bytes::Bytes;
use json_patch::Patch;
use serde::{Serialize, Serializer};

use crate::k8s;

/// A JSON Patch as the bytes of its JSON text, with its number of
/// operations. Once its response is written ([`PatchJson::into_response`])
/// the text lives there, base64-encoded, and is decoded again only if asked
/// for ([`PatchJson::as_bytes`], once): the server never asks. The offline
/// callers that apply it ask for the parsed [`json_patch::Patch`] with
/// [`PatchJson::patch`] (parsed once, on first use), so the parse shows
/// where it happens.
pub struct PatchJson {
    body: Body,
    operations: usize,
    parsed: OnceLock<Patch>,
}

enum Body {
    /// As built: the JSON text (with room for its response).
    Json(Vec<u8>),
    /// Answered: the text base64-encoded at `b64` in `response`.
    Sent {
        response: Bytes,
        b64: Range<usize>,
        json: OnceLock<Vec<u8>>,
    },
}

impl PatchJson {
    /// The patch's JSON text.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Json(json) => json,
            Body::Sent {
                response,
                b64,
                json,
            } => json.get_or_init(|| {
                STANDARD
                    .decode(&response[b64.clone()])
                    .expect("the webhook's own base64")
            }),
        }
    }

    /// How many operations it holds.
    pub fn operations(&self) -> usize {
        self.operations
    }

    /// The patch's JSON text, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.body {
            Body::Json(json) => json,
            Body::Sent { .. } => self.as_bytes().to_vec(),
        }
    }

    /// The patch as `json_patch` operations (parsed once).
    pub fn patch(&self) -> &Patch {
        self.parsed.get_or_init(|| {
            serde_json::from_slice(self.as_bytes())
                .expect("the webhook's own patch is a JSON Patch")
        })
    }

    /// The response that carries this patch: `head`, the patch in base64,
    /// then what `tail` writes. Made of the patch's own buffer: the text is
    /// encoded in place, from its end (each 3 bytes become 4 at or after
    /// where they were, so no byte is overwritten before it is read), and
    /// the patch keeps a handle on the response to decode it if asked.
    pub fn into_response(&mut self, head: &[u8], tail: impl FnOnce(&mut Vec<u8>)) -> Bytes {
        let mut out = match &mut self.body {
            Body::Json(json) => std::mem::take(json),
            Body::Sent { .. } => self.as_bytes().to_vec(),
        };
        let len = out.len();
        let b64_len = base64::encoded_len(len, true).expect("a patch is far below usize::MAX");
        let b64 = head.len()..head.len() + b64_len;
        out.resize(b64.end, 0);
        encode_in_place(&mut out, len, head.len());
        out[..head.len()].copy_from_slice(head);
        tail(&mut out);
        let response = Bytes::from(out);
        self.body = Body::Sent {
            response: response.clone(),
            b64,
            json: OnceLock::new(),
        };
        response
    }
}

/// Encodes `buf[..len]` as padded standard base64 into `buf[at..]`, in
/// place: chunk by chunk from the end, each copied out before its output
/// is written over it. Output chunk `k` starts at `at + 4k·C`, at or after
/// its input's start `3k·C`, so it never reaches an earlier chunk's input.
fn encode_in_place(buf: &mut [u8], len: usize, at: usize) {
    // The crate's SIMD engine (AVX2 or NEON when the CPU has it, detected
    // once, else its scalar engine): the text `STANDARD` gives, in about a
    // quarter of its instructions (callgrind, this function inclusive).
    static ENGINE: LazyLock<Simd> = LazyLock::new(|| Simd::standard(PAD));
    const CHUNK: usize = 3 * 1024;
    let mut input = [0u8; CHUNK];
    let mut end = len;
    while end > 0 {
        // Every chunk but the last holds a multiple of 3 bytes.
        let start = (end - 1) / CHUNK * CHUNK;
        let n = end - start;
        input[..n].copy_from_slice(&buf[start..end]);
        let out = at + start / 3 * 4;
        let written = ENGINE
            .encode_slice(&input[..n], &mut buf[out..])
            .expect("the buffer was sized by encoded_len");
        debug_assert_eq!(written, base64::encoded_len(n, true).unwrap_or(0));
        end = start;
    }
}

impl Clone for PatchJson {
    fn clone(&self) -> Self {
        let body = match &self.body {
            Body::Json(json) => Body::Json(json.clone()),
            Body::Sent { response, b64, .. } => Body::Sent {
                response: response.clone(),
                b64: b64.clone(),
                json: OnceLock::new(),
            },
        };
        PatchJson {
            body,
            operations: self.operations,
            parsed: OnceLock::new(),
        }
    }
}

impl PartialEq for PatchJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for PatchJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PatchJson")
            .field(&String::from_utf8_lossy(self.as_bytes()))
            .finish()
    }
}

impl Serialize for PatchJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.patch().serialize(s)
    }
}

/// The writer of `add` operations into one buffer.
pub(super) struct Ops {
    out: Vec<u8>,
    operations: usize,
}

impl Ops {
    /// A writer whose buffer holds `capacity` bytes before it grows (room
    /// for the response of the patch's estimate, an upper bound).
    pub(super) fn with_capacity(capacity: usize) -> Ops {
        let mut out = Vec::with_capacity(capacity.max(2));
        out.push(b'[');
        Ops { out, operations: 0 }
    }

    /// Writes one `add` operation: its pointer from `tokens` (each
    /// escaped as RFC 6901 says), then the value `write_value` writes.
    pub(super) fn add<'t>(
        &mut self,
        tokens: impl IntoIterator<Item = &'t str>,
        write_value: impl FnOnce(&mut Vec<u8>),
    ) {
        if self.operations > 0 {
            self.out.push(b',');
        }
        self.operations += 1;
        self.out.extend_from_slice(br#"{"op":"add","path":""#);
        for token in tokens {
            self.out.push(b'/');
            push_token(&mut self.out, token);
        }
        self.out.extend_from_slice(br#"","value":"#);
        write_value(&mut self.out);
        self.out.push(b'}');
    }

    /// Writes one `add` operation per value, all at the pointer from
    /// `tokens` (escaped once, then copied: appending many items to one
    /// list costs the items, not their pointers).
    pub(super) fn add_each<'t>(
        &mut self,
        tokens: impl IntoIterator<Item = &'t str>,
        values: &[&[u8]],
    ) {
        let Some((first, rest)) = values.split_first() else {
            return;
        };
        let head_start = self.out.len() + usize::from(self.operations > 0);
        self.add(tokens, |out| out.extend_from_slice(first));
        // The operation just written, up to its value: `{"op":..,"value":`.
        let head_end = self.out.len() - first.len() - 1;
        for value in rest {
            self.out.push(b',');
            self.out.extend_from_within(head_start..head_end);
            self.out.extend_from_slice(value);
            self.out.push(b'}');
        }
        self.operations += rest.len();
    }

    /// The patch, or `None` when no operation was written.
    pub(super) fn finish(mut self) -> Option<PatchJson> {
        if self.operations == 0 {
            return None;
        }
        self.out.push(b']');
        Some(PatchJson {
            body: Body::Json(self.out),
            operations: self.operations,
            parsed: OnceLock::new(),
        })
    }
}

/// A pointer token, escaped (`~` as `~0`, `/` as `~1`) and then as the
/// inside of a JSON string.
fn push_token(out: &mut Vec<u8>, token: &str) {
    let plain = token
        .bytes()
        .all(|b| b >= 0x20 && !matches!(b, b'~' | b'/' | b'"' | b'\\'));
    if plain {
        out.extend_from_slice(token.as_bytes());
        return;
    }
    let escaped = token.replace('~', "~0").replace('/', "~1");
    let start = out.len();
    k8s::write_str(out, &escaped);
    // Drop the quotes around it.
    out.pop();
    out.remove(start);
}

/// Writes `items` as a JSON list.
pub(super) fn write_list<'i>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'i [u8]>) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation};
    use serde_json::json;

    #[test]
    fn operations_are_serde_jsons_bytes() {
        let tokens: [&[&str]; 4] = [
            &["spec", "containers", "12", "env", "-"],
            &[
                "metadata",
                "annotations",
                "polyaxon.com/persistence-injected",
            ],
            &["a~b", "c/d~1", "q\"uote", "back\\slash", "tab\t", "\u{1}"],
            &[],
        ];
        let mut ops = Ops::with_capacity(0);
        let mut want = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            ops.add(t.iter().copied(), |out| out.extend_from_slice(b"{\"a\":1}"));
            want.push(PatchOperation::Add(AddOperation {
                path: PointerBuf::from_tokens(t.iter().copied()),
                value: json!({ "a": 1 }),
            }));
            assert_eq!(ops.operations, i + 1);
        }
        let written = ops.finish().expect("four operations");
        assert_eq!(
            String::from_utf8_lossy(written.as_bytes()),
            serde_json::to_string(&Patch(want.clone())).expect("serialises")
        );
        assert_eq!(written.operations(), 4);
        assert_eq!(written.patch(), &Patch(want));
        assert!(Ops::with_capacity(10).finish().is_none());
    }

    #[test]
    fn the_response_is_the_patch_encoded_in_place() {
        // Lengths around the chunk size, the SIMD engine's blocks (24 and
        // 48 bytes in) and each remainder mod 3, heads from none to longer
        // than a chunk's growth. `STANDARD` is the crate's scalar engine.
        let lengths = [
            0, 1, 2, 3, 4, 5, 23, 24, 25, 26, 27, 47, 48, 49, 50, 51, 96, 97,
        ];
        for len in lengths
            .into_iter()
            .chain([3071, 3072, 3073, 3074, 6144, 10_000])
        {
            for head in [&b""[..], b"{", &[b'h'; 1500]] {
                let json: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let mut patch = PatchJson {
                    body: Body::Json(json.clone()),
                    operations: 1,
                    parsed: OnceLock::new(),
                };
                let response = patch.into_response(head, |out| out.extend_from_slice(b"\"}"));
                let mut want = head.to_vec();
                want.extend_from_slice(STANDARD.encode(&json).as_bytes());
                want.extend_from_slice(b"\"}");
                assert!(response[..] == want[..], "len {len}, head {}", head.len());
                assert_eq!(patch.as_bytes(), &json[..], "decoded again when asked");
                assert_eq!(patch.clone().into_bytes(), json);
            }
        }
    }

    /// Any length and any head, not only the table's: the response is the
    /// head, the scalar engine's base64 of the text and the tail, and the
    /// text decodes back.
    #[test]
    fn encoding_in_place_matches_the_scalar_engine_for_any_length() {
        use proptest::prelude::*;
        let cases = (0..20_000usize, 0..4_000usize, any::<u8>());
        // No regression files written into the repository.
        let config = ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest::proptest!(config, |((len, head_len, seed) in cases)| {
            let json: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let head = vec![b'h'; head_len];
            let mut patch = PatchJson {
                body: Body::Json(json.clone()),
                operations: 1,
                parsed: OnceLock::new(),
            };
            let response = patch.into_response(&head, |out| out.extend_from_slice(b"\"}"));
            let b64 = STANDARD.encode(&json);
            prop_assert_eq!(&response[..head_len], &head[..]);
            prop_assert!(response[head_len..head_len + b64.len()] == *b64.as_bytes());
            prop_assert_eq!(&response[head_len + b64.len()..], b"\"}");
            prop_assert_eq!(patch.as_bytes(), &json[..]);
        });
    }

    /// `add_each` writes what `add` would, one operation per value.
    #[test]
    fn add_each_is_add_per_value() {
        let values: [&[u8]; 3] = [b"{\"a\":1}", b"[]", b"\"x\""];
        let tokens = ["spec", "containers", "0", "env/x~", "-"];
        for before in [0, 2] {
            for n in 0..=values.len() {
                let (mut each, mut one) = (Ops::with_capacity(0), Ops::with_capacity(0));
                for _ in 0..before {
                    each.add(["a"], |out| out.push(b'1'));
                    one.add(["a"], |out| out.push(b'1'));
                }
                each.add_each(tokens, &values[..n]);
                for v in &values[..n] {
                    one.add(tokens, |out| out.extend_from_slice(v));
                }
                assert_eq!(each.operations, one.operations, "{before} then {n}");
                assert_eq!(each.out, one.out, "{before} then {n}");
            }
        }
    }
}
