use super::*;

fn problems(yaml: &str) -> Vec<String> {
    match Config::from_yaml(yaml) {
        Ok(_) => vec![],
        Err(ConfigError::Invalid(p)) => p.iter().map(Problem::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn example_config_is_valid_and_has_every_kind() {
    let c = Config::example();
    let kinds: BTreeSet<&str> = c
        .data
        .values()
        .chain(c.outputs.values())
        .map(|s| match s.backend() {
            Backend::Volume {
                source: Source::HostPath(_),
                ..
            } => "hostPath",
            Backend::Volume {
                source: Source::Claim(_),
                ..
            } => "claim",
            Backend::Volume {
                source: Source::EmptyDir,
                ..
            } => "emptyDir",
            Backend::Cloud { provider, .. } => provider.as_str(),
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["hostPath", "claim", "emptyDir", "gcs", "s3", "azure"])
    );
}

#[test]
fn spec_example_loads_with_and_without_top_key() {
    let body = r#"
  data:
    data1:        {mountPath: /data/1, hostPath: /path/to/data, readOnly: true}
    data2:        {mountPath: /data/2, existingClaim: data-2-pvc}
    data-gcs3:    {store: gcs,   bucket: gs://data-bucket,  secret: gcs-secret, secretKey: gcs-key.json}
    data-s3:      {store: s3,    bucket: s3://data-bucket,  secret: s3-secret,  secretKey: s3-key.json}
    data-azure:   {store: azure, bucket: "wasbs://data-container@account.blob.core.windows.net/", secret: az-secret, secretKey: az-key.json}
  outputs:
    outputs1:     {mountPath: /outputs/1, hostPath: /path/to/outputs}
    outputs2:     {mountPath: /outputs/2, existingClaim: outputs-2-pvc}
    outputs-gcs3: {store: gcs, bucket: gs://outputs-bucket, secret: gcs-secret, secretKey: gcs-key.json}
"#;
    let with = Config::from_yaml(&format!("persistence:\n{body}\nimage: ignored\n"))
        .expect("with persistence key");
    let bare = Config::from_yaml(&body.replace("\n  ", "\n")).expect("bare");
    assert_eq!(with, bare);
    assert_eq!(with.stores(Role::Data).len(), 5);
    assert_eq!(with.stores(Role::Outputs).len(), 3);
    let d1 = with.store("data1").expect("data1");
    assert_eq!(d1.path(), "/data/1");
    assert_eq!(
        d1.backend(),
        &Backend::Volume {
            mount_path: "/data/1".into(),
            source: Source::HostPath("/path/to/data".into()),
            read_only: true,
            volume: serde_json::json!({"name": "pw-data1", "hostPath": {"path": "/path/to/data"}}),
        }
    );
}

/// The SPEC §7 fields, parsed into the store: keyless stores, endpoints
/// (one trailing `/` dropped), regions and the SDK keys.
#[test]
fn cloud_store_fields_for_todays_clients() {
    let config = Config::from_yaml(
        r#"
data:
  minio: {store: s3, bucket: s3://data, endpoint: "http://minio.storage:9000/", region: us-east-1,
          secret: minio-creds, secretKey: minio.json, accessKeyIdKey: AWS_ACCESS_KEY_ID_FILE,
          secretAccessKeyKey: secret-access-key, sessionTokenKey: token}
  keyless: {store: gcs, bucket: gs://shared}
  v6: {store: gcs, bucket: gs://v6, endpoint: "https://[::1]:4443"}
  blob: {store: azure, bucket: "wasbs://c@acct.blob.core.windows.net/", secret: az, secretKey: az.json, connectionStringKey: conn}
outputs:
  out: {store: azure, bucket: "wasbs://o@acct2.blob.core.windows.net/", secret: az2, secretKey: az2.json, accountKeyKey: key}
"#,
    )
    .expect("valid");
    let cloud = |name: &str| match config.store(name).map(|s| s.backend()) {
        Some(Backend::Cloud {
            credentials,
            endpoint,
            region,
            ..
        }) => (credentials.clone(), endpoint.clone(), region.clone()),
        other => panic!("{name}: {other:?}"),
    };
    let (creds, endpoint, region) = cloud("minio");
    assert_eq!(endpoint.as_deref(), Some("http://minio.storage:9000"));
    assert_eq!(region.as_deref(), Some("us-east-1"));
    let creds = creds.expect("keyed");
    assert_eq!(
        creds.sdk,
        SdkKeys::S3 {
            access_key_id: "AWS_ACCESS_KEY_ID_FILE".into(),
            secret_access_key: "secret-access-key".into(),
            session_token: Some("token".into()),
        }
    );
    assert_eq!(cloud("keyless"), (None, None, None));
    assert_eq!(cloud("v6").1.as_deref(), Some("https://[::1]:4443"));
    assert_eq!(
        cloud("blob").0.map(|c| c.sdk),
        Some(SdkKeys::AzureConnectionString("conn".into()))
    );
    assert_eq!(
        cloud("out").0.map(|c| c.sdk),
        Some(SdkKeys::AzureAccountKey("key".into()))
    );
    assert_eq!(
        Provider::azure_account("wasbs://o@acct2.blob.core.windows.net/x"),
        Some("acct2")
    );
}

/// Each bad config, and a fragment every reported problem must contain.
#[test]
fn every_rule_is_checked_and_named() {
    let cases: &[(&str, &str, &[&str])] = &[
            ("not yaml", "data: [", &["not valid YAML"]),
            ("empty file", "", &["the file is empty"]),
            ("top is a list", "- a", &["must be a mapping"]),
            ("unknown top key", "dta: {}", &["dta: unknown key"]),
            (
                "polyaxon's own volumes",
                "persistence: {logs: {mountPath: /logs}, repos: {}, upload: {}, data: {}}",
                &["persistence.", "Polyaxon's own volume, not a store runs select: delete it"],
            ),
            ("unknown store field", "data: {d: {mountPath: /d, hostpath: /x}}", &["data.d", "unknown field `hostpath`"]),
            ("wrong type", "data: {d: {mountPath: /d, readOnly: yes please}}", &["data.d.readOnly: invalid type"]),
            ("store is a list", "data: {d: [1]}", &["data.d: invalid type: sequence, expected a mapping of store fields"]),
            ("relative mount path", "data: {d: {mountPath: data}}", &["data.d.mountPath", "absolute"]),
            ("dotdot mount path", "data: {d: {mountPath: /a/../b}}", &["data.d.mountPath", "'..'"]),
            ("root mount path", "data: {d: {mountPath: /}}", &["data.d.mountPath"]),
            ("missing mount path", "data: {d: {hostPath: /x}}", &["data.d: missing mountPath"]),
            ("null store", "data: {d: }", &["data.d: missing mountPath"]),
            ("both sources", "data: {d: {mountPath: /d, hostPath: /x, existingClaim: c}}", &["data.d: hostPath and existingClaim"]),
            ("relative host path", "data: {d: {mountPath: /d, hostPath: x}}", &["data.d.hostPath"]),
            ("bad claim", "data: {d: {mountPath: /d, existingClaim: Bad_Claim}}", &["data.d.existingClaim"]),
            ("duplicate mount path", "data: {a: {mountPath: /d}, b: {mountPath: /d/}}", &["data.b.mountPath", "store \"a\""]),
            ("duplicate across roles", "data: {a: {mountPath: /d}}\noutputs: {o: {mountPath: /d}}", &["outputs.o.mountPath"]),
            ("bad store name", "data: {Data_1: {mountPath: /d}}", &["data.Data_1: the store name must be a DNS-1123 label"]),
            ("duplicate name", "data: {a: {mountPath: /d}}\noutputs: {a: {mountPath: /o}}", &["outputs.a: the name is already used"]),
            ("read-only outputs", "outputs: {o: {mountPath: /o, readOnly: true}}", &["outputs.o.readOnly"]),
            ("unknown store kind", "data: {d: {store: hdfs, bucket: x, secret: s, secretKey: k}}", &["data.d.store", "gcs, s3 or azure"]),
            ("scheme mismatch", "outputs: {outputs-s3: {store: s3, bucket: gs://x, secret: s, secretKey: k}}", &["outputs.outputs-s3.bucket: \"gs://x\" does not match store s3 (expected s3://<bucket>)"]),
            ("empty gcs bucket", "data: {d: {store: gcs, bucket: gs://, secret: s, secretKey: k}}", &["data.d.bucket"]),
            ("bad azure bucket", "data: {d: {store: azure, bucket: wasbs://account.blob.core.windows.net/, secret: s, secretKey: k}}", &["data.d.bucket"]),
            ("missing bucket", "data: {d: {store: gcs, secret: s, secretKey: k}}", &["data.d: missing bucket"]),
            ("secretKey without secret", "data: {d: {store: gcs, bucket: gs://b, secretKey: k}}", &["data.d: has secretKey but no secret: give both", "or neither for a keyless store"]),
            ("secret without secretKey", "data: {d: {store: gcs, bucket: gs://b, secret: s}}", &["data.d: has secret but no secretKey"]),
            ("empty secret", "data: {d: {store: gcs, bucket: gs://b, secret: '', secretKey: k}}", &["data.d.secret: must not be empty"]),
            ("endpoint with a path", "data: {d: {store: s3, bucket: s3://b, endpoint: 'http://minio:9000/bucket'}}", &["data.d.endpoint: \"http://minio:9000/bucket\" must have no path, query or fragment"]),
            ("endpoint with a query", "data: {d: {store: s3, bucket: s3://b, endpoint: 'http://minio:9000?x=1'}}", &["data.d.endpoint", "no path, query or fragment"]),
            ("endpoint not http", "data: {d: {store: gcs, bucket: gs://b, endpoint: 'ftp://gcs:4443'}}", &["data.d.endpoint", "must use http or https"]),
            ("endpoint not a URL", "data: {d: {store: gcs, bucket: gs://b, endpoint: 'gcs:4443'}}", &["data.d.endpoint", "is not a URL"]),
            ("endpoint with credentials", "data: {d: {store: s3, bucket: s3://b, endpoint: 'http://key:secret@minio:9000'}}", &["data.d.endpoint", "must not hold credentials"]),
            ("endpoint bad port", "data: {d: {store: s3, bucket: s3://b, endpoint: 'http://minio:90000'}}", &["data.d.endpoint", "port"]),
            ("endpoint bare IPv6", "data: {d: {store: s3, bucket: s3://b, endpoint: 'http://::1:9000'}}", &["data.d.endpoint", "brackets"]),
            ("endpoint on azure", "data: {d: {store: azure, bucket: 'wasbs://c@a.blob.core.windows.net/', endpoint: 'http://azurite:10000'}}", &["data.d.endpoint: not allowed on store azure", "connectionStringKey"]),
            ("region on gcs", "data: {d: {store: gcs, bucket: gs://b, region: us-east-1}}", &["data.d.region: not allowed on store gcs (only s3 takes a region)"]),
            ("region not a name", "data: {d: {store: s3, bucket: s3://b, region: 'us east'}}", &["data.d.region", "is not a region name"]),
            ("half a key pair", "data: {d: {store: s3, bucket: s3://b, secret: s, secretKey: k, accessKeyIdKey: id}}", &["data.d.secretAccessKeyKey: missing", "give both or neither"]),
            ("other half of a key pair", "data: {d: {store: s3, bucket: s3://b, secret: s, secretKey: k, secretAccessKeyKey: sk}}", &["data.d.accessKeyIdKey: missing"]),
            ("session token alone", "data: {d: {store: s3, bucket: s3://b, secret: s, secretKey: k, sessionTokenKey: t}}", &["data.d.sessionTokenKey", "only used with an access key"]),
            ("SDK key without secret", "data: {d: {store: s3, bucket: s3://b, accessKeyIdKey: id, secretAccessKeyKey: sk}}", &["data.d.accessKeyIdKey: names a key of the store's Secret, but the store has no secret", "data.d.secretAccessKeyKey: names a key"]),
            ("S3 key field on gcs", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: k, accessKeyIdKey: id, secretAccessKeyKey: sk}}", &["data.d.accessKeyIdKey: not allowed on store gcs (only s3 takes it)"]),
            ("Azure key field on s3", "data: {d: {store: s3, bucket: s3://b, secret: s, secretKey: k, connectionStringKey: cs}}", &["data.d.connectionStringKey: not allowed on store s3 (only azure takes it)"]),
            ("both Azure key fields", "data: {d: {store: azure, bucket: 'wasbs://c@a.blob.core.windows.net/', secret: s, secretKey: k, connectionStringKey: cs, accountKeyKey: ak}}", &["data.d.accountKeyKey: connectionStringKey and accountKeyKey", "keep one"]),
            ("SDK key not a Secret key", "data: {d: {store: azure, bucket: 'wasbs://c@a.blob.core.windows.net/', secret: s, secretKey: k, accountKeyKey: 'a key'}}", &["data.d.accountKeyKey", "is not a Secret key"]),
            ("secretKey shadows an SDK variable", "data: {d: {store: s3, bucket: s3://b, secret: s, secretKey: AWS_ACCESS_KEY_ID}}", &["data.d.secretKey", "sets itself"]),
            ("SDK field on a volume store", "data: {d: {mountPath: /d, region: us-east-1}}", &["data.d.region: only allowed on a cloud store"]),
            ("mount path on cloud", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: k, mountPath: /x}}", &["data.d.mountPath: not allowed on a cloud store"]),
            ("bucket without store", "data: {d: {mountPath: /d, bucket: gs://b}}", &["data.d.bucket: only allowed on a cloud store"]),
            ("secretKey two secrets", "data: {a: {store: gcs, bucket: gs://a, secret: s1, secretKey: k}, b: {store: s3, bucket: s3://b, secret: s2, secretKey: k}}", &["data.b.secretKey", "secret \"s1\" by store \"a\""]),
            ("secretKey not an env name", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: 1key}}", &["data.d.secretKey"]),
            ("secretKey reserved", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: POLYAXON_RUN_DATA_PATHS}}", &["data.d.secretKey", "sets itself"]),
            ("bad secret name", "data: {d: {store: gcs, bucket: gs://b, secret: S_1, secretKey: k}}", &["data.d.secret"]),
            ("same data bucket twice", "data: {a: {store: gcs, bucket: gs://b, secret: s, secretKey: k}, c: {store: gcs, bucket: gs://b, secret: s, secretKey: k}}", &["data.c.bucket", "data store \"a\""]),
            ("empty namespaces", "data: {d: {mountPath: /d, namespaces: []}}", &["data.d.namespaces: the list is empty"]),
            ("bad namespace", "data: {d: {mountPath: /d, namespaces: [Team_A]}}", &["data.d.namespaces"]),
            ("unknown default outputs", "outputs: {o: {mountPath: /o}}\ndefaultOutputs: nope", &["defaultOutputs: \"nope\" is not an outputs store (outputs stores: o)"]),
            ("section is a list", "data: [a]", &["data: expected a mapping"]),
            ("isolateNamespaces on data", "data: {d: {mountPath: /d, isolateNamespaces: true}}", &["data.d.isolateNamespaces: only allowed on an outputs store"]),
            ("isolateNamespaces on cloud data", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: k, isolateNamespaces: false}}", &["data.d.isolateNamespaces: only allowed on an outputs store"]),
            ("isolateNamespaces not a bool", "outputs: {o: {mountPath: /o, isolateNamespaces: maybe}}", &["outputs.o.isolateNamespaces: invalid type"]),
        ];
    for (what, yaml, fragments) in cases {
        let got = problems(yaml);
        assert!(!got.is_empty(), "{what}: accepted {yaml:?}");
        for fragment in *fragments {
            assert!(
                got.iter().any(|p| p.contains(fragment)),
                "{what}: no problem mentions {fragment:?}; got {got:#?}"
            );
        }
    }
}

#[test]
fn a_duplicate_of_an_invalid_store_is_reported_too() {
    let got = problems("data: {a: {mountPath: rel}}\noutputs: {a: {mountPath: /o}}");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got.iter()
            .any(|p| p.starts_with("outputs.a: the name is already used")),
        "{got:#?}"
    );
}

#[test]
fn all_problems_are_reported_together() {
    let got = problems(
            "data: {a: {mountPath: rel}, b: {store: s3, bucket: gs://x, secret: s, secretKey: k}}\noutputs: {o: {mountPath: /o, readOnly: true}}",
        );
    assert_eq!(got.len(), 3, "{got:#?}");
    let Err(e) = Config::from_yaml(
        "data: {a: {mountPath: rel}, b: {store: s3, bucket: gs://x, secret: s, secretKey: k}}\noutputs: {o: {mountPath: /o, readOnly: true}}",
    ) else {
        panic!("invalid")
    };
    let shown = e.to_string();
    assert!(shown.starts_with("3 problems:\n  - "), "{shown}");
    // Each problem is structured: where, and what.
    let ConfigError::Invalid(problems) = e else {
        panic!("{e}")
    };
    let at: Vec<&str> = problems.iter().map(|p| p.at.as_str()).collect();
    assert_eq!(
        at,
        ["data.a.mountPath", "data.b.bucket", "outputs.o.readOnly"]
    );
}

#[test]
fn whole_file_problems_have_no_path() {
    let Err(ConfigError::Invalid(problems)) = Config::from_yaml("[]") else {
        panic!("a list is not a config")
    };
    assert_eq!(problems[0].at, "");
    assert!(problems[0]
        .to_string()
        .starts_with("the file must be a mapping"));
}

#[test]
fn good_configs_load() {
    let cases = [
            ("empty sections", "data:\noutputs:\n"),
            ("empty dir", "data: {scratch: {mountPath: /scratch}}"),
            ("trailing slash normalised", "data: {d: {mountPath: /d/}}"),
            ("same secret reused", "data: {a: {store: gcs, bucket: gs://a, secret: s, secretKey: k}}\noutputs: {o: {store: gcs, bucket: gs://o, secret: s, secretKey: k}}"),
            ("azure with path", "data: {a: {store: azure, bucket: \"wasbs://c@acct.blob.core.windows.net/some/dir\", secret: s, secretKey: k}}"),
            ("namespaces", "data: {d: {mountPath: /d, namespaces: [team-a, team-b]}}"),
            ("persistence null", "persistence:\n"),
        ];
    for (what, yaml) in cases {
        if let Err(e) = Config::from_yaml(yaml) {
            panic!("{what}: refused: {e}");
        }
    }
    let c = Config::from_yaml("data: {d: {mountPath: /d/}}").expect("valid");
    assert_eq!(c.store("d").map(Store::path), Some("/d"));
}

#[test]
fn isolate_namespaces_on_outputs_stores() {
    let c = Config::from_yaml(
            "outputs:\n  shared: {mountPath: /o, isolateNamespaces: true}\n  bucket: {store: s3, bucket: s3://b, secret: s, secretKey: k, isolateNamespaces: true}\n  plain: {mountPath: /p}\n",
        )
        .expect("valid");
    let isolates = |n: &str| c.store(n).map(Store::isolates_namespaces);
    assert_eq!(isolates("shared"), Some(true));
    assert_eq!(isolates("bucket"), Some(true));
    assert_eq!(isolates("plain"), Some(false), "off by default");
}

#[test]
fn availability_is_indexed_by_namespace() {
    let c = Config::from_yaml(
            "data:\n  a: {mountPath: /a}\n  b: {mountPath: /b, namespaces: [x, y]}\n  c: {mountPath: /c}\n  d: {mountPath: /d, namespaces: [y]}\n  e: {mountPath: /e, namespaces: [x]}\n",
        )
        .expect("valid");
    let names = |ns: &str| -> Vec<&str> { c.available(Role::Data, ns).map(Store::name).collect() };
    assert_eq!(names("x"), ["a", "b", "c", "e"], "merged in name order");
    assert_eq!(names("y"), ["a", "b", "c", "d"]);
    assert_eq!(names("z"), ["a", "c"]);
    for ns in ["x", "y", "z"] {
        assert_eq!(c.available_count(Role::Data, ns), names(ns).len(), "{ns}");
        // The index agrees with each store's own rule.
        let by_rule: Vec<&str> = c
            .stores(Role::Data)
            .values()
            .filter(|s| s.available_in(ns))
            .map(Store::name)
            .collect();
        assert_eq!(names(ns), by_rule, "{ns}");
    }
}

#[test]
fn default_outputs_respects_namespaces() {
    let c = Config::from_yaml(
            "outputs:\n  a: {mountPath: /a, namespaces: [team-a]}\n  b: {mountPath: /b}\n  c: {mountPath: /c}\ndefaultOutputs: c\n",
        )
        .expect("valid");
    assert_eq!(c.default_outputs("x").map(Store::name), Some("c"));
    let c = Config::from_yaml(
            "outputs:\n  a: {mountPath: /a}\n  b: {mountPath: /b}\n  c: {mountPath: /c, namespaces: [team-c]}\ndefaultOutputs: c\n",
        )
        .expect("valid");
    assert_eq!(c.default_outputs("team-c").map(Store::name), Some("c"));
    assert_eq!(c.default_outputs("other").map(Store::name), Some("a"));
    let c = Config::from_yaml("outputs:\n  a: {mountPath: /a, namespaces: [x]}\n").expect("valid");
    assert_eq!(c.default_outputs("y").map(Store::name), None);
}
