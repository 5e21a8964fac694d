//! `check`'s hybrid group, pure: whether the webhook registration is
//! narrowed to the webhook's pods (the core's
//! [`hybrid::WEBHOOK_CONDITION`]), and then whether the admission policies
//! and their bindings are present and equal to what `policy --hybrid`
//! generates from the installed config (regenerated here and compared,
//! naming the first difference). Policies beside a webhook that is not
//! narrowed mutate pods twice: a warning.
//!
//! The API server adds defaults to what it stores (an empty
//! `objectSelector`, a binding's `matchPolicy`), so an installed spec
//! matches when every field the generator writes is there with its value.

use k8s_openapi::api::admissionregistration::v1::MatchCondition;
use serde_json::Value;

use super::objects::{unreadable, Lookup};
use super::report::Check;
use crate::config::Config;
use persistence_webhook_core::policy::{self, hybrid, Options};

/// The objects `policy` prints, in its order: kind and resource (plural).
pub const KINDS: [(&str, &str); 4] = [
    ("MutatingAdmissionPolicy", "mutatingadmissionpolicies"),
    ("ValidatingAdmissionPolicy", "validatingadmissionpolicies"),
    (
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
    ),
    (
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    ),
];

/// What the hybrid checks read.
pub struct Inputs<'a> {
    /// The webhook entry's `matchConditions`.
    pub conditions: &'a [MatchCondition],
    /// The installed objects named `options.name`, in [`KINDS`] order.
    pub installed: &'a [Lookup<Value>; 4],
    /// The installed config, if valid.
    pub config: Option<&'a Config>,
    /// The webhook's namespace and the policies' name (`hybrid` is set here).
    pub options: &'a Options,
    /// `namespace/name` of the ConfigMap and its key, for the hint.
    pub config_map: (&'a str, &'a str, &'a str),
}

/// The checks; none when the install is not hybrid (no narrowing, no
/// policy).
pub fn judge(inputs: &Inputs<'_>) -> Vec<Check> {
    let name = &inputs.options.name;
    let narrowing = inputs
        .conditions
        .iter()
        .find(|c| c.name == hybrid::WEBHOOK_CONDITION);
    let (ns, cm, key) = inputs.config_map;
    let regenerate = format!(
        "regenerate with persistence-webhook policy --config persistence.yaml --hybrid --webhook-namespace {ns} --name {name} \
         (persistence.yaml: kubectl get configmap -n {ns} {cm} -o jsonpath='{{.data.{}}}') and apply: kubectl apply --server-side -f policies.yaml",
        key.replace('.', "\\.")
    );
    let title = "the webhook is narrowed to the pods the policies leave to it (hybrid)";
    let Some(narrowing) = narrowing else {
        return match &inputs.installed[0] {
            Lookup::Found(_) => vec![Check::warn(
                "hybrid-narrowed",
                title,
                format!(
                    "MutatingAdmissionPolicy {name} is installed, but the webhook registration has no matchCondition {}: \
                     pods without the selection annotation are mutated twice, by the policy and again by the webhook \
                     (which adds nothing, but stays in their path and refuses them while it is down)",
                    hybrid::WEBHOOK_CONDITION
                ),
                "narrow the webhook: kubectl apply --server-side -k manifests/overlays/hybrid, or helm upgrade with \
                 hybrid.enabled=true; or delete the policies and their bindings",
            )],
            _ => Vec::new(),
        };
    };
    let mut checks = Vec::new();
    if narrowing.expression == hybrid::webhook_pods() {
        checks.push(Check::pass(
            "hybrid-narrowed",
            title,
            format!(
                "matchCondition {}: pods with the selection annotation, and unnamed pods whose outputs sub-path may need the admission uid",
                hybrid::WEBHOOK_CONDITION
            ),
        ));
    } else {
        checks.push(Check::fail(
            "hybrid-narrowed",
            title,
            format!(
                "matchCondition {} is not the one this version writes: some pods may be left to neither path, or taken by both",
                hybrid::WEBHOOK_CONDITION
            ),
            "apply this version's registration: kubectl apply --server-side -k manifests/overlays/hybrid, or helm upgrade with hybrid.enabled=true",
        ));
    }
    let options = Options {
        hybrid: true,
        ..inputs.options.clone()
    };
    let generated = inputs.config.map(|c| policy::generate(c, &options));
    for (i, (kind, resource)) in KINDS.iter().enumerate() {
        let title = format!("{kind} {name} is present and as `policy --hybrid` generates it");
        let check = match (&inputs.installed[i], &generated) {
            (Lookup::Error(e), _) => unreadable("policy-object", title, "it", e, resource),
            (Lookup::Missing, _) => Check::fail(
                "policy-object",
                title,
                "not found: the webhook is narrowed, so the pods it leaves to the policies get no stores (or are not refused)",
                regenerate.clone(),
            ),
            (Lookup::Found(_), None) => {
                Check::skip("policy-object", title, "needs a valid config (see config)")
            }
            (Lookup::Found(_), Some(Err(e))) => Check::fail(
                "policy-object",
                title,
                format!("the installed config cannot be compiled into policies: {e}"),
                "change the config, or install the webhook alone (without hybrid)",
            ),
            (Lookup::Found(got), Some(Ok(objects))) => {
                let want = &objects[i]["spec"];
                match first_difference("spec", want, &got["spec"]) {
                    None => Check::pass(
                        "policy-object",
                        title,
                        match want["policyName"].as_str() {
                            Some(bound) => format!("binds {bound}, as generated from the installed config"),
                            None => "equal to what the installed config generates".to_owned(),
                        },
                    ),
                    Some(difference) => Check::fail(
                        "policy-object",
                        title,
                        format!("differs from what the installed config generates: {difference}"),
                        regenerate.clone(),
                    ),
                }
            }
        };
        checks.push(check);
    }
    checks
}

/// The first field `want` has that `got` lacks or holds with another
/// value, by its path; lists must have the same length.
pub fn first_difference(path: &str, want: &Value, got: &Value) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().find_map(|(k, v)| match g.get(k) {
            None => Some(format!("{path}.{k} is missing (generated: {})", short(v))),
            Some(x) => first_difference(&format!("{path}.{k}"), v, x),
        }),
        (Value::Array(w), Value::Array(g)) if w.len() != g.len() => Some(format!(
            "{path} has {} items installed, {} generated",
            g.len(),
            w.len()
        )),
        (Value::Array(w), Value::Array(g)) => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (v, x))| first_difference(&format!("{path}[{i}]"), v, x)),
        _ if want == got => None,
        (Value::String(w), Value::String(g)) if w.len().max(g.len()) > 80 => {
            // Long CEL: where they part, with a little of each.
            let at = w.chars().zip(g.chars()).take_while(|(a, b)| a == b).count();
            let from = at.saturating_sub(20);
            let part = |s: &str| -> String { s.chars().skip(from).take(60).collect() };
            Some(format!(
                "{path} parts at character {at}: installed \"...{}\", generated \"...{}\"",
                part(g),
                part(w)
            ))
        }
        _ => Some(format!(
            "{path} is {} installed, {} generated",
            short(got),
            short(want)
        )),
    }
}

/// A value for a message: its JSON, clipped to 80 characters.
fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 80 {
        return text;
    }
    let head: String = text.chars().take(77).collect();
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::check::report::Status;
    use serde_json::json;

    fn condition(name: &str, expression: &str) -> MatchCondition {
        MatchCondition {
            name: name.into(),
            expression: expression.into(),
        }
    }

    fn installed(config: &Config, hybrid: bool) -> [Lookup<Value>; 4] {
        let options = Options {
            hybrid,
            ..Options::default()
        };
        let objects = policy::generate(config, &options).expect("compiles");
        // As the API server stores them: with defaults of its own.
        let mut found = objects.into_iter().map(|mut o| {
            o["spec"]["matchResources"]["matchPolicy"] = json!("Equivalent");
            Lookup::Found(o)
        });
        [(); 4].map(|()| found.next().expect("four objects"))
    }

    fn judged(conditions: &[MatchCondition], installed: &[Lookup<Value>; 4]) -> Vec<Check> {
        let config = Config::example();
        judge(&Inputs {
            conditions,
            installed,
            config: Some(&config),
            options: &Options::default(),
            config_map: (
                "persistence-webhook",
                "persistence-webhook-config",
                "persistence.yaml",
            ),
        })
    }

    fn statuses(checks: &[Check]) -> Vec<Status> {
        checks.iter().map(|c| c.result).collect()
    }

    #[test]
    fn a_webhook_alone_gets_no_hybrid_checks() {
        let none = [(); 4].map(|()| Lookup::Missing);
        assert!(judged(&[], &none).is_empty());
    }

    #[test]
    fn a_whole_hybrid_install_passes() {
        let narrowed = [condition(
            hybrid::WEBHOOK_CONDITION,
            &hybrid::webhook_pods(),
        )];
        let checks = judged(&narrowed, &installed(&Config::example(), true));
        assert_eq!(statuses(&checks), [Status::Passed; 5], "{checks:#?}");
        assert!(
            checks[3].detail.contains("binds persistence-webhook"),
            "{checks:#?}"
        );
    }

    #[test]
    fn policies_beside_a_webhook_not_narrowed_mutate_twice() {
        let checks = judged(&[], &installed(&Config::example(), false));
        assert_eq!(statuses(&checks), [Status::Warning]);
        assert!(checks[0].detail.contains("mutated twice"), "{checks:#?}");
    }

    #[test]
    fn what_differs_is_named_with_the_fix() {
        let narrowed = [condition(
            hybrid::WEBHOOK_CONDITION,
            &hybrid::webhook_pods(),
        )];
        // Policies made without --hybrid.
        let checks = judged(&narrowed, &installed(&Config::example(), false));
        assert_eq!(checks[1].result, Status::Failed, "{checks:#?}");
        assert!(
            checks[1]
                .detail
                .contains("spec.matchConditions has 4 items installed, 5 generated"),
            "{checks:#?}"
        );
        let hint = checks[1].hint.as_deref().unwrap_or_default();
        assert!(
            hint.contains("policy --config persistence.yaml --hybrid"),
            "{hint}"
        );
        // Another config's policies: a variable differs.
        let other = Config::from_yaml("data:\n  d1: {mountPath: /d/1}\n").expect("valid");
        let checks = judged(&narrowed, &installed(&other, true));
        assert!(
            checks[1]
                .detail
                .contains("spec.mutations[0].jsonPatch.expression parts at character"),
            "{checks:#?}"
        );
        // A binding of another policy; a missing one.
        let mut bound = installed(&Config::example(), true);
        if let Lookup::Found(b) = &mut bound[2] {
            b["spec"]["policyName"] = json!("other");
        }
        bound[3] = Lookup::Missing;
        let checks = judged(&narrowed, &bound);
        assert!(
            checks[3].detail.contains(
                "spec.policyName is \"other\" installed, \"persistence-webhook\" generated"
            ),
            "{checks:#?}"
        );
        assert_eq!(checks[4].result, Status::Failed);
        assert!(checks[4].detail.starts_with("not found"), "{checks:#?}");
        // A condition of that name that is not the core's.
        let stale = [condition(hybrid::WEBHOOK_CONDITION, "true")];
        let checks = judged(&stale, &installed(&Config::example(), true));
        assert_eq!(checks[0].result, Status::Failed, "{checks:#?}");
    }
}
