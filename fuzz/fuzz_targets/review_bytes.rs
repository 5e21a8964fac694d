//! `review()` on arbitrary bytes against the golden fixtures' config: every
//! body must get an answer or a `ReviewError`, never a panic.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use persistence_webhook_core::{review, Config};

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::from_yaml(include_str!("../../tests/fixtures/config.yaml"))
        .expect("the golden fixtures' config is valid")
});

fuzz_target!(|body: &[u8]| {
    if let Ok(reviewed) = review(&CONFIG, body) {
        // Whatever was decided, the response must be a JSON AdmissionReview.
        let out: serde_json::Value =
            serde_json::from_slice(&reviewed.response).expect("the response is JSON");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(
            out["response"]["uid"].as_str(),
            Some(reviewed.subject.uid.as_str())
        );
    }
});
