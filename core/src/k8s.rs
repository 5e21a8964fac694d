//! The one place that names `k8s_openapi` paths. The rest of the crate uses
//! these types only to *build* the objects it adds (so they match the
//! Kubernetes schema) and, in tests, to check that a patched pod still
//! deserialises. The pod under review is never round-tripped through them.

pub use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource, KeyToPath,
    PersistentVolumeClaimVolumeSource, Pod, SecretKeySelector, SecretVolumeSource, Volume,
    VolumeMount,
};
