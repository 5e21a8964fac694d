//! `Config::from_yaml` on arbitrary text: valid UTF-8 as is, anything else
//! through a lossy conversion. It must accept or refuse, never panic; and a
//! config it accepts must be usable: reviewing a plain pod against it (in a
//! namespace every store is open to, and in one a store may be limited to)
//! must not panic either, and a patch it yields must apply.

#![no_main]

use libfuzzer_sys::fuzz_target;
use persistence_webhook_core::review::{review, Decision};
use persistence_webhook_core::Config;
use serde_json::{json, Value};

fn pod() -> Value {
    json!({
        "metadata": {"name": "p", "annotations": {}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}
    })
}

fn body(namespace: &str) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": namespace, "operation": "CREATE", "object": pod()
        }
    })
    .to_string()
    .into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = Config::from_yaml(&text) else {
        return;
    };
    for namespace in ["default", "team-a"] {
        let reviewed = review(&config, &body(namespace)).expect("a well-formed review is answered");
        if let Decision::Patched(p) = &reviewed.decision {
            let mut patched = pod();
            if let Err(e) = json_patch::patch(&mut patched, p.patch()) {
                panic!("the patch does not apply: {e}\nconfig: {text}\npatch: {p:?}");
            }
        }
    }
});
