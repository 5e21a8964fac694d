//! Whether a pod's item holds everything the webhook would write (the API
//! server adds defaults after the patch): the test of "already ours".

use serde_json::Value;

/// Whether `have` holds everything in `ours`. Extra fields are allowed: the
/// API server defaults our volumes after the patch (`hostPath.type: ""`,
/// `secret.defaultMode: 420`), so a re-admitted pod carries more than we
/// wrote and is still ours.
pub fn covers(have: &Value, ours: &Value) -> bool {
    match (have, ours) {
        (Value::Object(h), Value::Object(o)) => o
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| covers(hv, v))),
        (Value::Array(h), Value::Array(o)) => {
            h.len() == o.len() && h.iter().zip(o).all(|(h, o)| covers(h, o))
        }
        _ => have == ours,
    }
}
