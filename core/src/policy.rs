//! Policy mode (SPEC §10): the config compiled into a
//! MutatingAdmissionPolicy, a ValidatingAdmissionPolicy and their bindings,
//! which give every pod without the `polyaxon.com/persistence` annotation
//! what the webhook gives it, with no server in its path. Pure: config in,
//! objects out.
//!
//! The mutating policy makes the webhook's decision in CEL (`program`):
//! what the config fixes is computed here per namespace class
//! (`classes`), what the pod decides is left to CEL. A pod the webhook
//! would deny gets only an annotation carrying the webhook's message, which
//! the validating policy refuses with that message, so the pod is never
//! stored (an allowed pod never keeps that annotation). A config the policies cannot
//! express is refused with the store and the reason; nothing is dropped.

use serde_json::{json, Value};

use crate::config::{Config, Role};
use crate::text::clip_list;
use crate::vocabulary::{
    ANNOTATION_PERSISTENCE, LABEL_INJECTION, OPT_IN, OPT_OUT, POLICY_DENIED_ANNOTATION,
};

mod cel;
mod classes;
pub mod hybrid;
mod program;

/// The longest CEL expression the API server parses (cel-go's default
/// `ExpressionSizeCodePointLimit`, which Kubernetes keeps), in code points.
pub const MAX_EXPRESSION_CODE_POINTS: usize = 100_000;

/// The most stores one namespace may get from the policies. CEL's
/// runtime cost (a million units per expression) grows with the stores
/// times the pod's containers: on kube-apiserver 1.36.3 a pod of 3
/// containers was mutated with 200 volume stores and refused with 250, one
/// of 8 containers with 100 and not 150 (`tests/cel_limits.rs` measures it
/// again). At 100, pods of up to 8 containers are within the budget.
pub const MAX_STORES_PER_NAMESPACE: usize = 100;

/// Where the policies apply: the webhook registration's scope.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace the webhook is installed in (never mutated: its pods
    /// must start while it is down), as in the registration's
    /// `not-webhook-namespace` condition.
    pub webhook_namespace: String,
    /// The objects' name (the policies and their bindings share it).
    pub name: String,
    /// A hybrid install: the policies leave to the webhook the pods its
    /// narrowed registration admits ([`hybrid::POLICY_CONDITION`]).
    pub hybrid: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            webhook_namespace: "persistence-webhook".to_owned(),
            name: "persistence-webhook".to_owned(),
            hybrid: false,
        }
    }
}

/// Why the config cannot be compiled into policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Two volumes could be given the same alternate name, which the
    /// webhook resolves within one review and a policy cannot.
    #[error("{first} and {second} can be given the same pod volume name (their names share the first 57 characters): the policy names each volume on its own and cannot keep them apart as the webhook does; rename one of them, or let the webhook admit these pods")]
    VolumeNames {
        /// One volume's store.
        first: String,
        /// The other's.
        second: String,
    },
    /// More stores for one namespace than a pod's admission can afford.
    #[error("{namespaces} get {stores} stores from the config, over the policy's limit of {MAX_STORES_PER_NAMESPACE} stores per namespace: the API server's CEL cost budget (a million units per expression) is spent on stores times containers, and past it pods are refused; split the config, or let the webhook admit these pods")]
    TooManyStores {
        /// Which namespaces (a class).
        namespaces: String,
        /// How many stores they get.
        stores: usize,
    },
    /// A CEL expression past what the API server parses.
    #[error("the policy's {expression} is {size} code points of CEL, over the API server's limit of {MAX_EXPRESSION_CODE_POINTS} per expression ({stores} stores, {classes} namespace classes); it grows with {grows}: split the config, or let the webhook admit these pods")]
    TooLarge {
        /// Which expression (e.g. `variable cfg`).
        expression: String,
        /// Its size in code points.
        size: usize,
        /// The config's stores.
        stores: usize,
        /// The config's namespace classes.
        classes: usize,
        /// What it grows with.
        grows: &'static str,
    },
}

/// The four objects, in the order to apply them: the policies, then their
/// bindings.
pub fn generate(config: &Config, options: &Options) -> Result<Vec<Value>, PolicyError> {
    generate_with_store_limit(config, options, MAX_STORES_PER_NAMESPACE)
}

/// [`generate`] with another limit of stores per namespace, to measure
/// where the API server's CEL cost budget ends (`tests/cel_limits.rs`);
/// an install uses [`generate`].
#[doc(hidden)]
pub fn generate_with_store_limit(
    config: &Config,
    options: &Options,
    max_stores: usize,
) -> Result<Vec<Value>, PolicyError> {
    let classes = classes::classes(config);
    for class in &classes {
        let stores = class.data.len() + usize::from(class.outputs.is_some());
        if stores > max_stores {
            let namespaces = if class.namespaces.is_empty() {
                "namespaces the config does not name".to_owned()
            } else {
                format!(
                    "namespaces {}",
                    clip_list(
                        class.namespaces.iter().map(String::as_str),
                        class.namespaces.len()
                    )
                )
            };
            return Err(PolicyError::TooManyStores { namespaces, stores });
        }
    }
    let program = program::program(&classes)?;
    let stores = config.stores(Role::Data).len() + config.stores(Role::Outputs).len();
    let expressions = program
        .variables
        .iter()
        .map(|(name, expr)| (format!("variable {name}"), expr))
        .chain(std::iter::once(("JSON Patch".to_owned(), &program.patch)));
    for (expression, text) in expressions {
        let size = text.chars().count();
        if size > MAX_EXPRESSION_CODE_POINTS {
            let grows = match expression.as_str() {
                "variable cfg" | "variable cls" => "the namespaces named in the config",
                _ => "the stores, times the namespace classes",
            };
            return Err(PolicyError::TooLarge {
                expression,
                size,
                stores,
                classes: classes.len(),
                grows,
            });
        }
    }

    let name = &options.name;
    // Every object: its kind, the shared name and labels, and its spec.
    let object = |kind: &str, spec: Value| {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/name": "persistence-webhook",
                    "app.kubernetes.io/component": "policy",
                },
            },
            "spec": spec,
        })
    };
    let constraints = json!({
        "matchPolicy": "Equivalent",
        "resourceRules": [{
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
        }],
    });
    let mut conditions = json!([
        {
            "name": "not-kubernetes-system-namespace",
            "expression": "!request.namespace.startsWith('kube-')",
        },
        {
            "name": "not-webhook-namespace",
            "expression": format!("request.namespace != {}", cel::lit(&options.webhook_namespace)),
        },
        {
            "name": "not-mirror-pod",
            "expression": "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)",
        },
        {
            "name": "no-selection-annotation",
            "expression": format!(
                "!has(object.metadata.annotations) || !({} in object.metadata.annotations)",
                cel::lit(ANNOTATION_PERSISTENCE)
            ),
        },
    ]);
    if options.hybrid {
        if let Some(list) = conditions.as_array_mut() {
            list.push(hybrid::policy_condition());
        }
    }
    let resources = json!({
        "namespaceSelector": {
            "matchExpressions": [
                {"key": LABEL_INJECTION, "operator": "In", "values": [OPT_IN]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", options.webhook_namespace]},
            ],
        },
        "objectSelector": {
            "matchExpressions": [
                {"key": LABEL_INJECTION, "operator": "NotIn", "values": [OPT_OUT]},
            ],
        },
    });
    let variables: Vec<Value> = program
        .variables
        .iter()
        .map(|(name, expression)| json!({"name": name, "expression": expression}))
        .collect();
    let mutating = object(
        "MutatingAdmissionPolicy",
        json!({
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": constraints,
            "matchConditions": conditions,
            "variables": variables,
            "mutations": [{
                "patchType": "JSONPatch",
                "jsonPatch": {"expression": program.patch},
            }],
        }),
    );
    let marked = format!(
        "has(object.metadata.annotations) && {key} in object.metadata.annotations",
        key = cel::lit(POLICY_DENIED_ANNOTATION)
    );
    let validating = object(
        "ValidatingAdmissionPolicy",
        json!({
            "failurePolicy": "Fail",
            "matchConstraints": constraints,
            "matchConditions": conditions,
            "validations": [{
                "expression": format!("!({marked})"),
                "messageExpression": format!(
                    "string(object.metadata.annotations[{}])",
                    cel::lit(POLICY_DENIED_ANNOTATION)
                ),
                "reason": "Invalid",
            }],
        }),
    );
    let mutating_binding = object(
        "MutatingAdmissionPolicyBinding",
        json!({"policyName": name, "matchResources": resources}),
    );
    let validating_binding = object(
        "ValidatingAdmissionPolicyBinding",
        json!({
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": resources,
        }),
    );
    Ok(vec![
        mutating,
        validating,
        mutating_binding,
        validating_binding,
    ])
}

#[cfg(test)]
mod tests;
