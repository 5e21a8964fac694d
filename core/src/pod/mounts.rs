//! The kept volume mounts of a container list, compact: a record of 16
//! bytes per mount, whatever its strings, and what
//! [`Container`](super::Container)'s `volume_mounts` gives back (a
//! [`Mount`] per record, its strings borrowed).
//!
//! **Why spans of the pod's text.** A kept mount used to be a [`Mount`]
//! held as read (three `Cow<str>` and an `Option<bool>`, 80 bytes, plus a
//! `u32` owner): a list that doubles as it grows peaks at three times its
//! records, so 300,000 `{"name":"pw-a","mountPath":"/m"}` (33 bytes each)
//! cost 6.35 times the body. Names are not bounded in number (alternate
//! volume names are `pw--<n>-...`), so no dedup helps. Here a mount is
//! two spans (offset and length, `u32` each) into the text the pod was
//! read from, and a container's mounts are one run of the list (its end
//! recorded once per container that keeps any), so the shortest entry
//! kept (`{"name":"pw-","mountPath":""}`, 29 bytes) costs at most 3 x 16
//! bytes while the list doubles. `subPath` and `readOnly`, which each add
//! at least 13 bytes to an entry, go to a side list of 12-byte entries
//! only for the mounts that have them. Measured (`cargo bench --bench
//! memory`): 1.27 x the body for that shape, 1.46 x at worst (the
//! shortest entries with `subPath`), against 6.35 x and 6.99 x before.
//!
//! The other choice, the span of each kept mount object read again when
//! decided, would parse every kept mount twice on every review. Spans
//! cost the common path nothing measurable: strings without escapes come
//! from serde borrowed from the text, and the offset is pointer
//! arithmetic; on the shared bench review, `review_with` costs 233,431
//! instructions against 233,469 before (callgrind, per request over
//! 1,000 keep-alive requests to `serve`).
//!
//! A string with JSON escapes is handed over decoded, in a scratch
//! buffer: its span is found in the text after its key (a key without
//! escapes is borrowed, so where it ends is known; the value's opening
//! quote follows past `:` and whitespace), checked by decoding it again,
//! and decoded again when it is read (rare: only escaped strings pay).
//! Only a value whose key has escapes too cannot be found that way; it is
//! copied, decoded, into the list's arena.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{Containers, Item, Keep};
use crate::text::JsonStr;

/// Where a string of a kept mount is: in the text the pod was read from,
/// as written (without escapes, or with them and decoded when read), or
/// in the list's arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    start: u32,
    /// The length, and in its top two bits [`IN_ARENA`] or [`ESCAPED`].
    len: u32,
}

/// The span is of the list's arena, not of the text.
const IN_ARENA: u32 = 1 << 31;
/// The span is of a JSON string in the text, quotes and escapes
/// included: decoded when read.
const ESCAPED: u32 = 1 << 30;
/// The bits of [`Span::len`] that are the length.
const LEN: u32 = ESCAPED - 1;
/// [`MountExtra::sub_path`] when the mount has none (both flags set:
/// never a span).
const ABSENT: Span = Span {
    start: 0,
    len: u32::MAX,
};

impl Span {
    fn text<'v>(self, source: &'v str, arena: &'v str) -> Cow<'v, str> {
        let start = self.start as usize;
        let range = start..start + (self.len & LEN) as usize;
        // Every span was made from a slice of the same text or arena: the
        // empty fallbacks are never taken.
        if self.len & IN_ARENA != 0 {
            return Cow::Borrowed(arena.get(range).unwrap_or_default());
        }
        let text = source.get(range).unwrap_or_default();
        if self.len & ESCAPED == 0 {
            return Cow::Borrowed(text);
        }
        // Decoded once already, when read, to the same string.
        serde_json::from_str::<JsonStr<'_>>(text).map_or(Cow::Borrowed(text), |s| s.0)
    }
}

/// A kept mount: where its volume's name and its mount path are.
#[derive(Debug, Clone, Copy)]
pub(super) struct MountRecord {
    name: Span,
    path: Span,
}

/// `subPath` and `readOnly` of a kept mount that has either: 12 bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct MountExtra {
    /// The mount's index in [`Containers`]' records ([`INDEX`]), and its
    /// `readOnly` ([`READ_ONLY_SET`], [`READ_ONLY_TRUE`]).
    mount: u32,
    /// [`ABSENT`] when the mount has no `subPath` (or a null one).
    sub_path: Span,
}

/// [`MountExtra::mount`]: the mount has a `readOnly` (not null).
const READ_ONLY_SET: u32 = 1 << 31;
/// [`MountExtra::mount`]: its `readOnly` is true.
const READ_ONLY_TRUE: u32 = 1 << 30;
/// The bits of [`MountExtra::mount`] that are the index.
const INDEX: u32 = READ_ONLY_TRUE - 1;

impl MountExtra {
    fn index(self) -> usize {
        (self.mount & INDEX) as usize
    }

    fn read_only(self) -> Option<bool> {
        (self.mount & READ_ONLY_SET != 0).then_some(self.mount & READ_ONLY_TRUE != 0)
    }
}

/// A mount as the decision reads it, from [`Mounts`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mount<'a> {
    /// `name` (the volume).
    pub name: Cow<'a, str>,
    /// `mountPath`.
    pub mount_path: Cow<'a, str>,
    /// `subPath`.
    pub sub_path: Option<Cow<'a, str>>,
    /// `readOnly`.
    pub read_only: Option<bool>,
}

/// A container's kept mounts (see [`Keep`]), read back as [`Mount`]s in
/// order. Empty by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mounts<'v> {
    source: &'v str,
    arena: &'v str,
    records: &'v [MountRecord],
    /// The extras of these records, in order.
    extras: &'v [MountExtra],
    /// The index of `records[0]` in the whole list.
    first: usize,
}

impl<'v> Mounts<'v> {
    /// How many mounts were kept.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether none was kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Each kept mount in order.
    pub fn iter(&self) -> MountIter<'v> {
        MountIter {
            mounts: *self,
            next: 0,
            extra: 0,
        }
    }
}

impl<'v> IntoIterator for Mounts<'v> {
    type Item = Mount<'v>;
    type IntoIter = MountIter<'v>;
    fn into_iter(self) -> MountIter<'v> {
        self.iter()
    }
}

/// The iterator of [`Mounts::iter`].
#[derive(Debug, Clone)]
pub struct MountIter<'v> {
    mounts: Mounts<'v>,
    next: usize,
    extra: usize,
}

impl<'v> Iterator for MountIter<'v> {
    type Item = Mount<'v>;
    fn next(&mut self) -> Option<Mount<'v>> {
        let m = self.mounts;
        let record = m.records.get(self.next)?;
        let index = m.first + self.next;
        self.next += 1;
        let extra = m.extras.get(self.extra).filter(|e| e.index() == index);
        if extra.is_some() {
            self.extra += 1;
        }
        let text = |s: Span| s.text(m.source, m.arena);
        Some(Mount {
            name: text(record.name),
            mount_path: text(record.path),
            sub_path: extra.map(|e| e.sub_path).filter(|s| *s != ABSENT).map(text),
            read_only: extra.and_then(|e| e.read_only()),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.mounts.records.len() - self.next;
        (left, Some(left))
    }
}

/// The records of one container's run: `records` of the list from
/// `first`, with their extras.
pub(super) fn mounts<'v>(
    list: &'v Containers<'_>,
    records: Range<usize>,
    extras: Range<usize>,
) -> Mounts<'v> {
    Mounts {
        source: list.source,
        arena: &list.arena,
        first: records.start,
        records: &list.mounts[records],
        extras: &list.mount_extras[extras],
    }
}

/// How many of `extras` from `from` belong to records before `end`.
pub(super) fn extras_before(extras: &[MountExtra], from: usize, end: usize) -> usize {
    extras
        .get(from..)
        .unwrap_or_default()
        .iter()
        .take_while(|e| e.index() < end)
        .count()
}

/// A string of a mount as read: the value, and the key it was read under
/// when that key was borrowed from the text (to find an escaped value).
struct Read<'de> {
    value: Cow<'de, str>,
    key: Option<&'de str>,
}

/// A mount's field name, and the key as written when it is a slice of
/// the text (no escapes), to find an escaped value after it. Read as
/// serde's derive reads a field name: no string is built.
struct Field<'de>(FieldName, Option<&'de str>);

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldName {
    Name,
    MountPath,
    SubPath,
    ReadOnly,
    Other,
}

impl FieldName {
    fn of(key: &str) -> FieldName {
        match key {
            "name" => FieldName::Name,
            "mountPath" => FieldName::MountPath,
            "subPath" => FieldName::SubPath,
            "readOnly" => FieldName::ReadOnly,
            _ => FieldName::Other,
        }
    }
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Field<'de>, E> {
                Ok(Field(FieldName::of(s), Some(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Field<'de>, E> {
                Ok(Field(FieldName::of(s), None))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Read<'de> {
    fn new(value: JsonStr<'de>, key: Option<&'de str>) -> Read<'de> {
        Read {
            value: value.0,
            key,
        }
    }
}

impl<'a> Containers<'a> {
    /// Where `s` is: a span of the text when it is a slice of it, else of
    /// the text as written (escaped), else a copy in the arena.
    fn span(&mut self, s: Read<'a>) -> Result<Span, &'static str> {
        let too_long = "a pod text past 4 GiB, or a mount's name or path of 1 GiB or more";
        let (range, flag) = match &s.value {
            Cow::Borrowed(b) => match slice_of(self.source, b) {
                Some(range) => (range, 0),
                None => (self.copy_to_arena(b), IN_ARENA),
            },
            Cow::Owned(o) => match s.key.and_then(|k| escaped_value(self.source, k, o)) {
                Some(range) => (range, ESCAPED),
                None => (self.copy_to_arena(o), IN_ARENA),
            },
        };
        let start = u32::try_from(range.start).map_err(|_| too_long)?;
        let len = u32::try_from(range.len())
            .ok()
            .filter(|l| *l <= LEN)
            .ok_or(too_long)?;
        Ok(Span {
            start,
            len: len | flag,
        })
    }

    fn copy_to_arena(&mut self, s: &str) -> Range<usize> {
        let start = self.arena.len();
        self.arena.push_str(s);
        start..self.arena.len()
    }

    /// Keeps a mount.
    fn push_mount(
        &mut self,
        name: Read<'a>,
        path: Read<'a>,
        sub_path: Option<Read<'a>>,
        read_only: Option<bool>,
    ) -> Result<(), &'static str> {
        let index = u32::try_from(self.mounts.len())
            .ok()
            .filter(|i| *i <= INDEX)
            .ok_or("more kept volume mounts than 1 Gi")?;
        let record = MountRecord {
            name: self.span(name)?,
            path: self.span(path)?,
        };
        if sub_path.is_some() || read_only.is_some() {
            let sub_path = match sub_path {
                Some(s) => self.span(s)?,
                None => ABSENT,
            };
            let read_only = match read_only {
                None => 0,
                Some(false) => READ_ONLY_SET,
                Some(true) => READ_ONLY_SET | READ_ONLY_TRUE,
            };
            self.mount_extras.push(MountExtra {
                mount: index | read_only,
                sub_path,
            });
        }
        self.mounts.push(record);
        Ok(())
    }
}

/// Where `part` is in `text`, if it is a slice of it.
fn slice_of(text: &str, part: &str) -> Option<Range<usize>> {
    let start = part.as_ptr().addr().checked_sub(text.as_ptr().addr())?;
    let range = start..start.checked_add(part.len())?;
    let same = text.get(range.clone())?.as_ptr() == part.as_ptr();
    same.then_some(range)
}

/// Where in `text` the JSON string written after `key` (a slice of `text`,
/// a map's key) and a colon is, quotes included, if it decodes to `value`.
fn escaped_value(text: &str, key: &str, value: &str) -> Option<Range<usize>> {
    let bytes = text.as_bytes();
    let key_end = slice_of(text, key)?.end;
    let space = |i: &mut usize| {
        while matches!(bytes.get(*i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            *i += 1;
        }
    };
    let mut i = key_end;
    (bytes.get(i) == Some(&b'"')).then_some(())?;
    i += 1;
    space(&mut i);
    (bytes.get(i) == Some(&b':')).then_some(())?;
    i += 1;
    space(&mut i);
    let open = i;
    (bytes.get(i) == Some(&b'"')).then_some(())?;
    i += 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => break,
            _ => i += 1,
        }
    }
    let range = open..i + 1;
    // The proof that it is the string serde read.
    let decoded = serde_json::from_str::<JsonStr<'_>>(text.get(range.clone())?).ok()?;
    (*decoded == *value).then_some(range)
}

/// A container's `volumeMounts` (or null, `None`): every mount read, those
/// `keep` names kept in `list`.
pub(super) struct MountList<'l, 'k, 'de> {
    pub(super) list: &'l mut Containers<'de>,
    pub(super) keep: Keep<'k>,
}

impl<'de> de::DeserializeSeed<'de> for MountList<'_, '_, 'de> {
    type Value = Option<()>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MountList<'_, '_, 'de> {
    type Value = Option<()>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of JSON objects")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let keep = self.keep;
        while seq
            .next_element_seed(Item(MountVisitor {
                list: &mut *self.list,
                keep,
            }))?
            .is_some()
        {}
        Ok(Some(()))
    }
}

/// One mount, read as serde would derive it (`name` and `mountPath`
/// required, `subPath` and `readOnly` optional or null, other fields
/// skipped, a field twice refused before its second value is read) and
/// kept in `list` if `keep` names it.
struct MountVisitor<'l, 'k, 'de> {
    list: &'l mut Containers<'de>,
    keep: Keep<'k>,
}

impl<'de> Visitor<'de> for MountVisitor<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Mount")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let (mut name, mut path, mut sub_path, mut read_only) = (None, None, None, None);
        while let Some(Field(field, key)) = map.next_key::<Field<'de>>()? {
            match field {
                FieldName::Name => {
                    if name.is_some() {
                        return Err(de::Error::duplicate_field("name"));
                    }
                    name = Some(Read::new(map.next_value()?, key));
                }
                FieldName::MountPath => {
                    if path.is_some() {
                        return Err(de::Error::duplicate_field("mountPath"));
                    }
                    path = Some(Read::new(map.next_value()?, key));
                }
                FieldName::SubPath => {
                    if sub_path.is_some() {
                        return Err(de::Error::duplicate_field("subPath"));
                    }
                    let value: Option<JsonStr<'de>> = map.next_value()?;
                    sub_path = Some(value.map(|v| Read::new(v, key)));
                }
                FieldName::ReadOnly => {
                    if read_only.is_some() {
                        return Err(de::Error::duplicate_field("readOnly"));
                    }
                    read_only = Some(map.next_value::<Option<bool>>()?);
                }
                FieldName::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        let path = path.ok_or_else(|| de::Error::missing_field("mountPath"))?;
        if !self.keep.mount(&name.value, &path.value) {
            return Ok(());
        }
        self.list
            .push_mount(name, path, sub_path.flatten(), read_only.flatten())
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{read, Keep, PodView, Relevant};
    use super::*;
    use serde_json::Value;

    fn owned(m: Mount<'_>) -> Mount<'static> {
        Mount {
            name: Cow::Owned(m.name.into_owned()),
            mount_path: Cow::Owned(m.mount_path.into_owned()),
            sub_path: m.sub_path.map(|s| Cow::Owned(s.into_owned())),
            read_only: m.read_only,
        }
    }

    type PerContainer = Vec<Option<Vec<Mount<'static>>>>;

    /// Each container's mounts (init containers first), from the view.
    fn from_view(pod: &PodView<'_>) -> PerContainer {
        let spec = pod.spec.as_ref().expect("spec");
        spec.lists()
            .iter()
            .flat_map(|(_, list)| list.iter())
            .map(|c| c.volume_mounts.map(|m| m.iter().map(owned).collect()))
            .collect()
    }

    /// The same, read plainly from a `serde_json::Value`: every mount
    /// whole, kept if `keep` says so.
    fn reference(json: &str, keep: Keep<'_>) -> PerContainer {
        let pod: Value = serde_json::from_str(json).expect("JSON");
        let text = |v: &Value| v.as_str().map(|s| Cow::Owned(s.to_owned()));
        let mut out = Vec::new();
        for list in ["initContainers", "containers"] {
            for c in pod["spec"][list].as_array().into_iter().flatten() {
                out.push(c["volumeMounts"].as_array().map(|mounts| {
                    mounts
                        .iter()
                        .map(|m| Mount {
                            name: text(&m["name"]).expect("name"),
                            mount_path: text(&m["mountPath"]).expect("mountPath"),
                            sub_path: text(&m["subPath"]),
                            read_only: m["readOnly"].as_bool(),
                        })
                        .filter(|m| keep.mount(&m.name, &m.mount_path))
                        .collect()
                }));
            }
        }
        out
    }

    const POD: &str = r#"{"spec":{
        "initContainers":[{"name":"i","volumeMounts":[
            {"name":"a","mountPath":"/a"},
            {"name" : "pw-\n\u00e9" ,"mountPath":	"/i\"n\\it","readOnly":false},
            {"x":{"name":"q\n","mountPath":"q"},"mountPath":"/data/1","name":"b\u0062","subPath":"s\t"},
            {"name":"c","mountPath":"/c","subPath":"no","readOnly":true}]}],
        "containers":[
            {"name":"m","volumeMounts":[
                {"name":"pw-\ud83d\ude00","mountPath":"/x","subPath":null,"readOnly":null},
                {"n\u0061me":"pw-k\n","mountP\u0061th":"/k\u0000","s\u0075bPath":"\"s\""},
                {"name":"d","mountPath":"/out/run/1","readOnly":true,"subPath":"r"},
                {"name":"e","mountPath":"/e"},
                {"readOnly":true,"mountPath":"/m","name":"pw-m"},
                {"name":"pw-s","mountPath":"","subPath":""}]},
            {"name":"n"},
            {"name":"o","volumeMounts":null},
            {"name":"p","volumeMounts":[]},
            {"name":"q","volumeMounts":[{"name":"f","mountPath":"/f"}]},
            {"name":"r","volumeMounts":[{"name":"g","mountPath":"/g"},
                {"name":"pw-r","mountPath":"/r","readOnly":false}]}]}}"#;

    #[test]
    fn kept_mounts_read_back_as_a_plain_reader_reads_them() {
        let relevant = Relevant {
            mount_paths: ["/data/1".to_owned()].into(),
            outputs_roots: ["/out".to_owned()].into(),
            ..Relevant::default()
        };
        let ours = Keep::Ours(&relevant);
        let pod = read(POD, ours).expect("parses");
        let want = reference(POD, ours);
        assert_eq!(from_view(&pod), want);
        assert_eq!(size_of::<MountRecord>(), 16);
        assert_eq!(size_of::<MountExtra>(), 12);
        let kept: usize = want.iter().flatten().map(Vec::len).sum();
        assert_eq!(kept, 8, "the test keeps some and skips some");
        // Escaped values after plain keys are spans of the text; only the
        // mount whose keys have escapes is copied.
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.init_containers.arena, "");
        assert_eq!(spec.containers.arena, "pw-k\n/k\u{0}\"s\"");
        let all = read(POD, Keep::All).expect("parses");
        assert_eq!(from_view(&all), reference(POD, Keep::All));
        // Read without its text (serde's `Deserialize`): all copied, the same.
        let copied: PodView = serde_json::from_str(POD).expect("parses");
        assert_eq!(from_view(&copied), reference(POD, Keep::All));
    }

    #[test]
    fn a_mount_is_read_as_serde_derives_it() {
        for (json, want) in [
            (r#"{"mountPath":"/a"}"#, "missing field `name`"),
            (r#"{"name":"a"}"#, "missing field `mountPath`"),
            (r#"{"name":"a","name":"b"}"#, "duplicate field `name`"),
            (
                r#"{"readOnly":true,"readOnly":null}"#,
                "duplicate field `readOnly`",
            ),
            (r#"{"name":null}"#, "invalid type: null, expected a string"),
            (
                r#"{"name":"a","mountPath":1}"#,
                "invalid type: integer `1`, expected a string",
            ),
            (
                r#"{"subPath":2}"#,
                "invalid type: integer `2`, expected a string",
            ),
            (
                r#"{"readOnly":"yes"}"#,
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                r#"["a","/a"]"#,
                "invalid type: sequence, expected a JSON object",
            ),
        ] {
            let pod = format!(r#"{{"spec":{{"containers":[{{"volumeMounts":[{json}]}}]}}}}"#);
            let err = read(&pod, Keep::All).expect_err(json).to_string();
            assert!(err.starts_with(want), "{json}: {err}");
        }
    }

    #[test]
    fn escaped_values_are_found_after_their_key() {
        let text = r#"{"name" :	"a\nb","k":"x"}"#;
        let key = &text[2..6];
        assert_eq!(key, "name");
        assert_eq!(escaped_value(text, key, "a\nb"), Some(10..16));
        assert_eq!(
            escaped_value(text, key, "a\nc"),
            None,
            "decoded differently"
        );
        assert_eq!(
            escaped_value(text, "name", "a\nb"),
            None,
            "not a slice of it"
        );
        let k = &text[18..19];
        assert_eq!(escaped_value(text, k, "x"), Some(21..24));
        assert_eq!(slice_of(text, &text[3..5]), Some(3..5));
        assert_eq!(slice_of(text, "ame"), None);
    }
}
