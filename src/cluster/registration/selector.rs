//! Label selectors evaluated the way the API server does for a webhook's
//! `namespaceSelector` and `objectSelector`: `matchLabels` and
//! `matchExpressions` (In, NotIn, Exists, DoesNotExist) all hold. Pure.

use std::collections::BTreeMap;

use crate::cluster::check::objects::LabelSelector;

/// Whether `selector` selects an object with `labels`. An absent or empty
/// selector selects everything; an unknown operator selects nothing (the
/// API server refuses such a selector anyway).
pub fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// `key=value` pairs as a label map (tests and fixed probes).
pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::check::objects::LabelSelectorRequirement;

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn operators_match_as_the_api_server_does() {
        let team = labels([("team", "a"), ("env", "prod")]);
        let cases: Vec<(&str, LabelSelector, bool)> = vec![
            ("empty selects all", LabelSelector::default(), true),
            (
                "matchLabels equal",
                LabelSelector {
                    match_labels: Some(labels([("team", "a")])),
                    ..Default::default()
                },
                true,
            ),
            (
                "matchLabels differ",
                LabelSelector {
                    match_labels: Some(labels([("team", "b")])),
                    ..Default::default()
                },
                false,
            ),
            (
                "In",
                LabelSelector {
                    match_expressions: Some(vec![expr("team", "In", &["a", "b"])]),
                    ..Default::default()
                },
                true,
            ),
            (
                "In, absent key",
                LabelSelector {
                    match_expressions: Some(vec![expr("x", "In", &["a"])]),
                    ..Default::default()
                },
                false,
            ),
            (
                "NotIn, absent key selects",
                LabelSelector {
                    match_expressions: Some(vec![expr("x", "NotIn", &["a"])]),
                    ..Default::default()
                },
                true,
            ),
            (
                "NotIn, listed value",
                LabelSelector {
                    match_expressions: Some(vec![expr("env", "NotIn", &["prod"])]),
                    ..Default::default()
                },
                false,
            ),
            (
                "Exists",
                LabelSelector {
                    match_expressions: Some(vec![expr("env", "Exists", &[])]),
                    ..Default::default()
                },
                true,
            ),
            (
                "DoesNotExist",
                LabelSelector {
                    match_expressions: Some(vec![expr("env", "DoesNotExist", &[])]),
                    ..Default::default()
                },
                false,
            ),
            (
                "unknown operator",
                LabelSelector {
                    match_expressions: Some(vec![expr("env", "Gt", &["1"])]),
                    ..Default::default()
                },
                false,
            ),
        ];
        for (what, sel, want) in cases {
            assert_eq!(selects(Some(&sel), &team), want, "{what}");
        }
        assert!(selects(None, &team), "no selector selects all");
    }
}
