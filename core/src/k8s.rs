//! The one place that names `k8s_openapi` paths, and the builders of the
//! Kubernetes objects the webhook adds (volumes, mounts, env vars). They are
//! built through the typed API so their shape is the one Kubernetes
//! validates, then kept as JSON values. The pod under review is never
//! round-tripped through these types.

use serde_json::Value;

pub use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource, KeyToPath,
    PersistentVolumeClaimVolumeSource, Pod, SecretKeySelector, SecretVolumeSource, Volume,
    VolumeMount,
};

/// Where a pod volume the webhook adds comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSource<'a> {
    /// `hostPath`: a directory on the node.
    HostPath(&'a str),
    /// `persistentVolumeClaim`, opened read-only when asked.
    Claim {
        /// The claim in the pod's namespace.
        claim: &'a str,
        /// Sets `readOnly: true` on the claim.
        read_only: bool,
    },
    /// `emptyDir`: scratch space for the pod's lifetime.
    EmptyDir,
    /// One key of a Secret, projected as a file named after the key.
    SecretKey {
        /// The Secret.
        secret: &'a str,
        /// The key, also the file name.
        key: &'a str,
    },
}

/// The pod volume `name` backed by `source`.
pub fn volume(name: &str, source: VolumeSource<'_>) -> Value {
    let mut volume = Volume {
        name: name.to_owned(),
        ..Default::default()
    };
    match source {
        VolumeSource::HostPath(path) => {
            volume.host_path = Some(HostPathVolumeSource {
                path: path.to_owned(),
                type_: None,
            })
        }
        VolumeSource::Claim { claim, read_only } => {
            volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: read_only.then_some(true),
            })
        }
        VolumeSource::EmptyDir => volume.empty_dir = Some(EmptyDirVolumeSource::default()),
        VolumeSource::SecretKey { secret, key } => {
            volume.secret = Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                items: Some(vec![KeyToPath {
                    key: key.to_owned(),
                    path: key.to_owned(),
                    mode: None,
                }]),
                ..Default::default()
            })
        }
    }
    serde_json::to_value(volume).expect("a k8s Volume always serialises")
}

/// A container's mount of volume `name` at `path`; `readOnly` is written
/// only when true (the API server's default is read-write).
pub fn volume_mount(name: &str, path: &str, sub_path: Option<&str>, read_only: bool) -> Value {
    let mount = VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        sub_path: sub_path.map(str::to_owned),
        read_only: read_only.then_some(true),
        ..Default::default()
    };
    serde_json::to_value(mount).expect("a k8s VolumeMount always serialises")
}

/// The env var `name` set to `value`.
pub fn env_value(name: &str, value: &str) -> Value {
    let var = EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    };
    serde_json::to_value(var).expect("a k8s EnvVar always serialises")
}

/// The env var `name` read from `key` of Secret `secret`.
pub fn env_secret(name: &str, secret: &str, key: &str) -> Value {
    let var = EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..Default::default()
        }),
    };
    serde_json::to_value(var).expect("a k8s EnvVar always serialises")
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing a string to a Vec cannot fail");
}

/// [`volume_mount`]'s JSON, written directly: the keys in the order a
/// serialised `serde_json::Value` gives them (sorted), so the bytes are
/// the same.
pub fn write_volume_mount(
    out: &mut Vec<u8>,
    name: &str,
    path: &str,
    sub_path: Option<&str>,
    read_only: bool,
) {
    out.extend_from_slice(br#"{"mountPath":"#);
    write_str(out, path);
    out.extend_from_slice(br#","name":"#);
    write_str(out, name);
    if read_only {
        out.extend_from_slice(br#","readOnly":true"#);
    }
    if let Some(sub_path) = sub_path {
        out.extend_from_slice(br#","subPath":"#);
        write_str(out, sub_path);
    }
    out.push(b'}');
}

/// [`env_value`]'s JSON, written directly (see [`write_volume_mount`]).
pub fn write_env_value(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(br#"{"name":"#);
    write_str(out, name);
    out.extend_from_slice(br#","value":"#);
    write_str(out, value);
    out.push(b'}');
}

/// [`env_secret`]'s JSON, written directly (see [`write_volume_mount`]).
pub fn write_env_secret(out: &mut Vec<u8>, name: &str, secret: &str, key: &str) {
    out.extend_from_slice(br#"{"name":"#);
    write_str(out, name);
    out.extend_from_slice(br#","valueFrom":{"secretKeyRef":{"key":"#);
    write_str(out, key);
    out.extend_from_slice(br#","name":"#);
    write_str(out, secret);
    out.extend_from_slice(b"}}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn volume_per_source() {
        let cases = [
            (
                VolumeSource::Claim {
                    claim: "c",
                    read_only: true,
                },
                json!({"name": "v", "persistentVolumeClaim": {"claimName": "c", "readOnly": true}}),
            ),
            (
                VolumeSource::Claim {
                    claim: "c",
                    read_only: false,
                },
                json!({"name": "v", "persistentVolumeClaim": {"claimName": "c"}}),
            ),
            (VolumeSource::EmptyDir, json!({"name": "v", "emptyDir": {}})),
            (
                VolumeSource::HostPath("/h"),
                json!({"name": "v", "hostPath": {"path": "/h"}}),
            ),
            (
                VolumeSource::SecretKey {
                    secret: "s",
                    key: "k.json",
                },
                json!({"name": "v", "secret": {"secretName": "s", "items": [{"key": "k.json", "path": "k.json"}]}}),
            ),
        ];
        for (source, want) in cases {
            assert_eq!(volume("v", source), want, "{source:?}");
        }
    }

    #[test]
    fn written_json_is_the_typed_json() {
        let texts = [
            "",
            "v",
            "/p/q",
            "a\"b\\c",
            "tab\there\n",
            "\u{1}\u{1f}\u{7f}",
            "é/ü~",
        ];
        let typed = |v: Value| serde_json::to_vec(&v).expect("serialises");
        for a in texts {
            for b in texts {
                for read_only in [false, true] {
                    for sub in [None, Some(b)] {
                        let mut out = Vec::new();
                        write_volume_mount(&mut out, a, b, sub, read_only);
                        assert_eq!(
                            out,
                            typed(volume_mount(a, b, sub, read_only)),
                            "{a:?} {b:?}"
                        );
                    }
                }
                let mut out = Vec::new();
                write_env_value(&mut out, a, b);
                assert_eq!(out, typed(env_value(a, b)), "{a:?} {b:?}");
                let mut out = Vec::new();
                write_env_secret(&mut out, a, b, a);
                assert_eq!(out, typed(env_secret(a, b, a)), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn mounts_and_env() {
        assert_eq!(
            volume_mount("v", "/p", Some("s"), true),
            json!({"name": "v", "mountPath": "/p", "subPath": "s", "readOnly": true})
        );
        assert_eq!(
            volume_mount("v", "/p", None, false),
            json!({"name": "v", "mountPath": "/p"})
        );
        assert_eq!(env_value("A", "1"), json!({"name": "A", "value": "1"}));
        assert_eq!(
            env_secret("K", "s", "K"),
            json!({"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "K"}}})
        );
    }
}
