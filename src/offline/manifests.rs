//! Manifests as repositories hold them (SPEC §6): a YAML stream of documents
//! (`kubectl kustomize`, `helm template`), JSON values one after another, or
//! a `kind: List` of items, read into objects with their positions and
//! written back in their order as YAML every reader takes the same way.

use std::fmt;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::Value;

/// Where an object is in the input: its document (1-based, empty documents
/// not counted) and, inside a `List`, its item (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The document.
    pub document: usize,
    /// The item of a `List` document.
    pub item: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            None => write!(f, "document {}", self.document),
            Some(item) => write!(f, "document {}, item {item}", self.document),
        }
    }
}

/// Reads every document of `text`: JSON values (one or several) when it
/// parses as JSON, else a YAML stream. Empty documents are left out.
pub fn parse(text: &str) -> Result<Vec<Value>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
            .into_iter()
            .collect();
        if let Ok(values) = values {
            return Ok(values.into_iter().filter(|v| !v.is_null()).collect());
        }
        // Flow-style YAML also starts with `{`: read it as YAML below.
    }
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .map_err(|e| anyhow!("document {}: not valid YAML or JSON: {e}", i + 1))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The items of a `List` document (`kind: List`, or a typed list such as
/// `PodList`), or `None` when `doc` is not one.
pub fn list_items(doc: &Value) -> Option<&Vec<Value>> {
    let kind = doc["kind"].as_str()?;
    if !kind.ends_with("List") {
        return None;
    }
    doc["items"].as_array()
}

/// Every object of `docs` with its position, `List` items one by one.
pub fn objects(docs: &[Value]) -> Vec<(Position, &Value)> {
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.iter().enumerate() {
        let document = i + 1;
        match list_items(doc) {
            Some(items) => out.extend(items.iter().enumerate().map(|(j, item)| {
                (
                    Position {
                        document,
                        item: Some(j + 1),
                    },
                    item,
                )
            })),
            None => out.push((
                Position {
                    document,
                    item: None,
                },
                doc,
            )),
        }
    }
    out
}

/// The object at `at` in `docs`, to replace it.
pub fn object_mut(docs: &mut [Value], at: Position) -> Result<&mut Value> {
    let doc = docs
        .get_mut(at.document - 1)
        .ok_or_else(|| anyhow!("no {at}"))?;
    match at.item {
        None => Ok(doc),
        Some(item) => doc["items"]
            .as_array_mut()
            .and_then(|items| items.get_mut(item - 1))
            .ok_or_else(|| anyhow!("no {at}")),
    }
}

/// `docs` as one YAML stream, `---` between documents.
pub fn write(docs: &[Value]) -> String {
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&yaml(doc));
    }
    out
}

/// A mapping, not a list or a scalar, as every Kubernetes object is.
pub fn require_mapping(value: &Value) -> Result<()> {
    if value.is_object() {
        return Ok(());
    }
    bail!("expected a mapping, found {}", kind(value))
}

/// What a JSON value is, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The object as YAML that every reader takes back the same way. Strings
/// are always double-quoted (JSON string syntax is valid YAML): a YAML 1.1
/// reader such as kubectl's would otherwise turn a plain `yes`, `off` or
/// `1_000` into a boolean or a number.
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => yaml_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => yaml_list(items, 0, &mut out),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_key(key));
        out.push(':');
        yaml_value(value, indent + 2, out);
    }
}

fn yaml_list(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            // A map's first key goes on the dash's line, the rest under it.
            Value::Object(map) if !map.is_empty() => {
                let mut nested = String::new();
                yaml_map(map, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            other => yaml_value(other, indent + 2, out),
        }
    }
}

/// Writes `value` after a `key:` or `-` already on the line.
fn yaml_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml_map(map, indent, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml_list(items, indent, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

/// Keys made only of letters, digits and `-._/` are written plain unless a
/// YAML 1.1 reader could take them for something else; the rest are quoted.
fn yaml_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
        && key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_round_trips_and_quotes_every_string() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "yes", "on": "off", "n": "1_000"},
                "annotations": {"polyaxon.com/persistence": "data: [d]\noutputs: o\n"}},
            "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"],
                "env": [{"name": "X", "value": "off"}, {"name": "E", "value": ""}],
                "resources": {}, "ports": [{"containerPort": 80}]}],
                "volumes": [], "priority": 0, "enableServiceLinks": true, "nodeName": null}
        });
        let text = yaml(&pod);
        for quoted in [
            r#"a: "yes""#,
            r#""on": "off""#,
            r#""n": "1_000""#,
            r#"value: "off""#,
            r#"- "sleep""#,
        ] {
            assert!(text.contains(quoted), "{quoted} in\n{text}");
        }
        assert!(
            text.contains("resources: {}") && text.contains("volumes: []"),
            "{text}"
        );
        let back: Value = serde_yaml::from_str(&text).expect("valid YAML");
        assert_eq!(back, pod, "\n{text}");
    }

    #[test]
    fn streams_json_and_lists_are_read_in_order() {
        let yaml_stream = "---\n# Source: chart/a.yaml\nkind: A\n---\n---\nkind: B\n...\n";
        let docs = parse(yaml_stream).expect("a YAML stream");
        assert_eq!(docs, vec![json!({"kind": "A"}), json!({"kind": "B"})]);
        let json_values = parse("{\"kind\":\"A\"}\n{\"kind\":\"B\"}").expect("JSON values");
        assert_eq!(json_values.len(), 2);
        let flow = parse("{kind: A, metadata: {name: x}}").expect("flow YAML");
        assert_eq!(flow, vec![json!({"kind": "A", "metadata": {"name": "x"}})]);
        let list =
            json!({"apiVersion": "v1", "kind": "List", "items": [{"kind": "A"}, {"kind": "B"}]});
        let docs = vec![json!({"kind": "C"}), list];
        let at: Vec<String> = objects(&docs).iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            at,
            ["document 1", "document 2, item 1", "document 2, item 2"]
        );
        let err = parse("kind: A\n---\nkind: [unclosed\n").expect_err("broken second document");
        assert!(err.to_string().contains("document 2"), "{err}");
        let written = write(&docs);
        assert_eq!(parse(&written).expect("reads back"), docs, "{written}");
    }
}
