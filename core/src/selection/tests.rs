use super::*;

const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /d1, readOnly: true}
  data2: {mountPath: /data/2, existingClaim: d2}
  data-gcs: {store: gcs, bucket: gs://data-bucket, secret: gcs-secret, secretKey: gcs-key.json}
  team-data: {mountPath: /data/team, namespaces: [team-a]}
outputs:
  outputs1: {mountPath: /outputs/1, hostPath: /o1}
  outputs-gcs: {store: gcs, bucket: gs://outputs-bucket/, secret: gcs-secret, secretKey: gcs-key.json}
  team-out: {mountPath: /outputs/team, namespaces: [team-a]}
  shared: {mountPath: /outputs/shared, isolateNamespaces: true}
  shared-gcs: {store: gcs, bucket: gs://shared-bucket, secret: gcs-secret, secretKey: gcs-key.json, isolateNamespaces: true}
defaultOutputs: outputs1
"#;

fn config() -> Config {
    Config::from_yaml(CONFIG).expect("valid test config")
}

const POD: PodIdentity<'static> = PodIdentity {
    namespace: "default",
    name: Some("job-1"),
    generate_name: None,
    job: None,
    uid: "uid-1",
};

fn ann(persistence: Option<&str>) -> Annotations<'static> {
    Annotations {
        persistence: persistence.map(|s| Cow::Owned(s.to_owned())),
        ..Default::default()
    }
}

struct Want {
    data: &'static [&'static str],
    outputs: Option<&'static str>,
    path: Option<&'static str>,
}

fn check(what: &str, pod: PodIdentity<'_>, a: &Annotations<'_>, want: Want) {
    let c = config();
    let got = resolve(&c, pod, a, None, ["main", "init"])
        .unwrap_or_else(|e| panic!("{what}: denied: {e}"));
    let data: Vec<&str> = got.data.iter().map(|s| s.name()).collect();
    assert_eq!(data, want.data, "{what}: data");
    assert_eq!(
        got.outputs.as_ref().map(|o| o.store.name()),
        want.outputs,
        "{what}: outputs"
    );
    assert_eq!(
        got.outputs.as_ref().map(|o| o.path.as_str()),
        want.path,
        "{what}: outputs path"
    );
}

#[test]
fn selections_that_resolve() {
    let all = &["data-gcs", "data1", "data2"];
    let cases: Vec<(&str, PodIdentity, Annotations, Want)> = vec![
        (
            "no annotation: all data, default outputs",
            POD,
            ann(None),
            Want {
                data: all,
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/job-1"),
            },
        ),
        (
            "empty annotation is no selection",
            POD,
            ann(Some("  ")),
            Want {
                data: all,
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/job-1"),
            },
        ),
        (
            "data absent",
            POD,
            ann(Some("outputs: outputs-gcs")),
            Want {
                data: all,
                outputs: Some("outputs-gcs"),
                path: Some("gs://outputs-bucket/default/job-1"),
            },
        ),
        (
            "data: [] means none",
            POD,
            ann(Some("data: []")),
            Want {
                data: &[],
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/job-1"),
            },
        ),
        (
            "explicit, sorted, deduplicated",
            POD,
            ann(Some("data: [data2, data1, data2]\noutputs: outputs1")),
            Want {
                data: &["data1", "data2"],
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/job-1"),
            },
        ),
        (
            "JSON form",
            POD,
            ann(Some(r#"{"data":["data-gcs"],"outputs":"outputs-gcs"}"#)),
            Want {
                data: &["data-gcs"],
                outputs: Some("outputs-gcs"),
                path: Some("gs://outputs-bucket/default/job-1"),
            },
        ),
        (
            "null values are absent",
            POD,
            ann(Some("data: null\noutputs: null")),
            Want {
                data: all,
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/job-1"),
            },
        ),
        (
            "namespace store in its namespace",
            PodIdentity {
                namespace: "team-a",
                ..POD
            },
            ann(Some("data: [team-data]\noutputs: team-out")),
            Want {
                data: &["team-data"],
                outputs: Some("team-out"),
                path: Some("/outputs/team/team-a/job-1"),
            },
        ),
        (
            "namespace store joins the defaults there",
            PodIdentity {
                namespace: "team-a",
                ..POD
            },
            ann(None),
            Want {
                data: &["data-gcs", "data1", "data2", "team-data"],
                outputs: Some("outputs1"),
                path: Some("/outputs/1/team-a/job-1"),
            },
        ),
        (
            "generateName pod",
            PodIdentity {
                name: None,
                generate_name: Some("gen-"),
                ..POD
            },
            ann(None),
            Want {
                data: all,
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/gen-uid-1"),
            },
        ),
        (
            "a Job's pod: <namespace>/<job name>, whatever the pod's own name",
            PodIdentity {
                job: Some("train"),
                ..POD
            },
            ann(None),
            Want {
                data: all,
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/train"),
            },
        ),
        (
            "a Job's generateName pod: the Job's name, not generateName + uid",
            PodIdentity {
                name: None,
                generate_name: Some("train-"),
                job: Some("train"),
                ..POD
            },
            ann(None),
            Want {
                data: all,
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/train"),
            },
        ),
        (
            "containers subset",
            POD,
            ann(Some("containers: [main]")),
            Want {
                data: all,
                outputs: Some("outputs1"),
                path: Some("/outputs/1/default/job-1"),
            },
        ),
    ];
    for (what, pod, a, want) in cases {
        check(what, pod, &a, want);
    }
}

#[test]
fn sub_path_precedence() {
    let with = |subpath: Option<&str>, unique: Option<&str>| Annotations {
        outputs_subpath: subpath.map(|s| Cow::Owned(s.to_owned())),
        unique_name: unique.map(|s| Cow::Owned(s.to_owned())),
        ..Default::default()
    };
    let cases = [
        (
            "explicit wins",
            with(Some("runs/7"), Some("u.p.1")),
            "/outputs/1/runs/7",
        ),
        (
            "experiment",
            with(None, Some("user.project.42")),
            "/outputs/1/user/project/experiments/42",
        ),
        (
            "group experiment",
            with(None, Some("user.project.7.42")),
            "/outputs/1/user/project/groups/7/42",
        ),
        (
            "job",
            with(None, Some("user.project.jobs.5")),
            "/outputs/1/user/project/jobs/5",
        ),
        (
            "build",
            with(None, Some("user.project.builds.5")),
            "/outputs/1/user/project/builds/5",
        ),
        (
            "notebook",
            with(None, Some("user.project.notebooks.5")),
            "/outputs/1/user/project/notebooks/5",
        ),
        (
            "tensorboard",
            with(None, Some("user.project.tensorboards.5")),
            "/outputs/1/user/project/tensorboards/5",
        ),
        (
            "namespace/name",
            with(None, None),
            "/outputs/1/default/job-1",
        ),
    ];
    let c = config();
    for (what, a, want) in cases {
        let got = resolve(&c, POD, &a, None, ["main"]).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.outputs.map(|o| o.path), Some(want.to_owned()), "{what}");
    }
}

#[test]
fn injected_path_is_kept_when_under_the_store() {
    let c = config();
    let a = ann(None);
    let kept = resolve(&c, POD, &a, Some("/outputs/1/default/gen-abc"), ["main"]).expect("ok");
    let out = kept.outputs.expect("outputs");
    assert_eq!(
        (out.sub_path.as_str(), out.path.as_str()),
        ("default/gen-abc", "/outputs/1/default/gen-abc")
    );
    for other in [
        "/outputs/2/x",
        "/outputs/1",
        "/outputs/1/../x",
        "/outputs/10/x",
    ] {
        let got = resolve(&c, POD, &a, Some(other), ["main"]).expect("ok");
        assert_eq!(
            got.outputs.map(|o| o.path),
            Some("/outputs/1/default/job-1".into()),
            "{other}"
        );
    }
    let a = ann(Some("outputs: outputs-gcs"));
    let kept = resolve(&c, POD, &a, Some("gs://outputs-bucket/u/p/1"), ["main"]).expect("ok");
    assert_eq!(kept.outputs.map(|o| o.sub_path), Some("u/p/1".into()));
}

#[test]
fn denials_name_the_annotation_and_the_stores() {
    let team = PodIdentity {
        namespace: "team-b",
        ..POD
    };
    let cases: Vec<(&str, PodIdentity, Annotations, &[&str])> = vec![
            (
                "unknown data store",
                POD,
                ann(Some("data: [nope]")),
                &[
                    "polyaxon.com/persistence",
                    "data store \"nope\" does not exist",
                    "data: data-gcs, data1, data2; outputs: outputs-gcs, outputs1, shared, shared-gcs",
                ],
            ),
            (
                "outputs store named as data",
                POD,
                ann(Some("data: [outputs1]")),
                &["it is an outputs store"],
            ),
            (
                "unknown outputs store",
                POD,
                ann(Some("outputs: nope")),
                &["outputs store \"nope\" does not exist"],
            ),
            (
                "store of another namespace",
                team,
                ann(Some("data: [team-data]")),
                &[
                    "not available in namespace \"team-b\"",
                    "Stores available in namespace \"team-b\"",
                ],
            ),
            (
                "outputs as list",
                POD,
                ann(Some("outputs: [outputs1]")),
                &[
                    "outputs must be a single store name",
                    "outputs: outputs-gcs, outputs1, shared, shared-gcs",
                ],
            ),
            (
                "unknown key",
                POD,
                ann(Some("output: outputs1")),
                &[
                    "polyaxon.com/persistence is not a valid selection",
                    "unknown field `output`",
                    "Stores available",
                ],
            ),
            (
                "bad YAML",
                POD,
                ann(Some("data: [data1")),
                &["is not a valid selection", "Stores available"],
            ),
            (
                "data not a list",
                POD,
                ann(Some("data: data1")),
                &["is not a valid selection", "sequence"],
            ),
            (
                "number as store name is read as a name",
                POD,
                ann(Some("data: [1]")),
                &["data store \"1\" does not exist"],
            ),
            (
                "mapping where a list is expected",
                POD,
                ann(Some("data: {a: b}")),
                &["is not a valid selection", "invalid type: map"],
            ),
            (
                "annotation is a list",
                POD,
                ann(Some("- data1")),
                &["is not a valid selection: invalid type: sequence, expected a mapping with data, outputs and containers"],
            ),
            (
                "unknown container",
                POD,
                ann(Some("containers: [sidecar]")),
                &["containers names \"sidecar\"", "it has: main, init"],
            ),
            (
                "empty containers",
                POD,
                ann(Some("containers: []")),
                &["containers is empty"],
            ),
        ];
    let c = config();
    for (what, pod, a, fragments) in cases {
        let err = resolve(&c, pod, &a, None, ["main", "init"])
            .expect_err(what)
            .to_string();
        for f in fragments {
            assert!(err.contains(f), "{what}: {f:?} not in {err:?}");
        }
    }
}

#[test]
fn bad_sub_paths_are_denied() {
    let c = config();
    for bad in ["/abs", "../up", "a//b", "a/", "a\u{1}b", ""] {
        let a = Annotations {
            outputs_subpath: Some(Cow::Owned(bad.to_owned())),
            ..Default::default()
        };
        let err = resolve(&c, POD, &a, None, ["main"])
            .expect_err(bad)
            .to_string();
        assert!(
            err.starts_with("annotation polyaxon.com/outputs-subpath: sub-path"),
            "{err}"
        );
    }
    for bad in [
        "user.project",
        "user.project.x",
        "a..1",
        "user.project.jobs.x",
        "u.p.runs.1",
        "a.b/c.1",
    ] {
        let a = Annotations {
            unique_name: Some(Cow::Owned(bad.to_owned())),
            ..Default::default()
        };
        let err = resolve(&c, POD, &a, None, ["main"])
            .expect_err(bad)
            .to_string();
        assert!(
            err.starts_with("annotation polyaxon.com/unique-name"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn long_names_are_clipped_in_messages() {
    let long = "x".repeat(300_000);
    let err = resolve(
        &config(),
        POD,
        &ann(Some(&format!("data: [{long}]"))),
        None,
        ["main"],
    )
    .expect_err("unknown")
    .to_string();
    assert!(err.len() < 1000, "{} bytes", err.len());
    assert!(err.contains("... (300000 bytes)"), "{err}");
}

fn annotated(subpath: Option<&str>, unique: Option<&str>, outputs: &str) -> Annotations<'static> {
    Annotations {
        persistence: Some(Cow::Owned(format!("outputs: {outputs}"))),
        outputs_subpath: subpath.map(|s| Cow::Owned(s.to_owned())),
        unique_name: unique.map(|s| Cow::Owned(s.to_owned())),
        ..Default::default()
    }
}

#[test]
fn isolate_namespaces_prefixes_every_rule_once() {
    let c = config();
    let team = PodIdentity {
        namespace: "team-a",
        ..POD
    };
    let generated = PodIdentity {
        namespace: "team-a",
        name: None,
        generate_name: Some("gen-"),
        ..POD
    };
    let cases: Vec<(&str, PodIdentity, Annotations, Option<&str>, &str)> = vec![
        (
            "explicit",
            team,
            annotated(Some("runs/7"), None, "shared"),
            None,
            "/outputs/shared/team-a/runs/7",
        ),
        (
            "explicit naming another team's directory stays in its own",
            team,
            annotated(Some("team-b/runs/7"), None, "shared"),
            None,
            "/outputs/shared/team-a/team-b/runs/7",
        ),
        (
            "unique name",
            team,
            annotated(None, Some("user.project.42"), "shared"),
            None,
            "/outputs/shared/team-a/user/project/experiments/42",
        ),
        (
            "namespace/name is not prefixed twice",
            team,
            annotated(None, None, "shared"),
            None,
            "/outputs/shared/team-a/job-1",
        ),
        (
            "generateName",
            generated,
            annotated(None, None, "shared"),
            None,
            "/outputs/shared/team-a/gen-uid-1",
        ),
        (
            "namespace/job name is not prefixed twice",
            PodIdentity {
                job: Some("train"),
                ..generated
            },
            annotated(None, None, "shared"),
            None,
            "/outputs/shared/team-a/train",
        ),
        (
            "explicit wins over the Job's name",
            PodIdentity {
                job: Some("train"),
                ..team
            },
            annotated(Some("runs/7"), None, "shared"),
            None,
            "/outputs/shared/team-a/runs/7",
        ),
        (
            "unique name wins over the Job's name",
            PodIdentity {
                job: Some("train"),
                ..team
            },
            annotated(None, Some("user.project.42"), "shared"),
            None,
            "/outputs/shared/team-a/user/project/experiments/42",
        ),
        (
            "bucket store",
            team,
            annotated(Some("runs/7"), None, "shared-gcs"),
            None,
            "gs://shared-bucket/team-a/runs/7",
        ),
        (
            "recorded under <ns>/ is kept",
            team,
            annotated(None, None, "shared"),
            Some("/outputs/shared/team-a/old/run"),
            "/outputs/shared/team-a/old/run",
        ),
        (
            "recorded in another namespace's directory is not kept",
            team,
            annotated(None, None, "shared"),
            Some("/outputs/shared/team-b/run"),
            "/outputs/shared/team-a/job-1",
        ),
        (
            "recorded as the namespace directory itself is not kept",
            team,
            annotated(None, None, "shared"),
            Some("/outputs/shared/team-a"),
            "/outputs/shared/team-a/job-1",
        ),
        (
            "recorded outside any namespace is not kept",
            team,
            annotated(None, None, "shared"),
            Some("/outputs/shared/x"),
            "/outputs/shared/team-a/job-1",
        ),
        (
            "a store without it is unchanged",
            team,
            annotated(Some("runs/7"), None, "outputs1"),
            None,
            "/outputs/1/runs/7",
        ),
        (
            "a store without it keeps any recorded path under it",
            team,
            annotated(None, None, "outputs1"),
            Some("/outputs/1/team-b/run"),
            "/outputs/1/team-b/run",
        ),
    ];
    for (what, pod, a, recorded, want) in cases {
        let got =
            resolve(&c, pod, &a, recorded, ["main"]).unwrap_or_else(|e| panic!("{what}: {e}"));
        let out = got.outputs.expect("outputs");
        assert_eq!(out.path, want, "{what}");
        assert!(out.path.ends_with(&out.sub_path), "{what}");
    }
}

#[test]
fn every_rule_gives_a_sub_path_the_kubelet_can_create() {
    let c = config();
    let long = "e".repeat(256);
    let named = |name: &'static str| PodIdentity {
        name: Some(name),
        ..POD
    };
    let long_name: &'static str = Box::leak(long.clone().into_boxed_str());
    let long_prefix: &'static str = Box::leak(format!("{}-", "g".repeat(250)).into_boxed_str());
    let generated = PodIdentity {
        name: None,
        generate_name: Some(long_prefix),
        uid: "0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1",
        ..POD
    };
    type Case<'a> = (
        &'a str,
        PodIdentity<'a>,
        Annotations<'a>,
        Option<String>,
        &'a [&'a str],
    );
    let cases: Vec<Case> = vec![
        (
            "explicit: long element",
            POD,
            annotated(Some(&format!("runs/{long}")), None, "outputs1"),
            None,
            &[
                "annotation polyaxon.com/outputs-subpath: sub-path",
                "has an element of 256 bytes",
                "limit of 255 bytes",
            ],
        ),
        (
            "explicit: too long in all",
            POD,
            annotated(Some(&["d"; 2050].join("/")), None, "outputs1"),
            None,
            &[
                "annotation polyaxon.com/outputs-subpath",
                "makes the path 4110 bytes long (\"/outputs/1\"",
                "limit of 4096 bytes",
            ],
        ),
        (
            "explicit: backslash",
            POD,
            annotated(Some("runs\\7"), None, "outputs1"),
            None,
            &["annotation polyaxon.com/outputs-subpath", "backslash"],
        ),
        (
            "explicit: bidi override",
            POD,
            annotated(Some("runs/\u{202E}7"), None, "outputs1"),
            None,
            &["annotation polyaxon.com/outputs-subpath", "U+202E"],
        ),
        (
            "explicit: zero-width space",
            POD,
            annotated(Some("runs\u{200B}/7"), None, "outputs1"),
            None,
            &["U+200B"],
        ),
        (
            "explicit fits alone but not under <namespace>/",
            POD,
            annotated(Some(&["d"; 2038].join("/")), None, "shared"),
            None,
            &[
                "annotation polyaxon.com/outputs-subpath",
                "makes the path 4099 bytes long (\"/outputs/shared\"",
            ],
        ),
        (
            "unique name: long part",
            POD,
            annotated(None, Some(&format!("user.{long}.42")), "outputs1"),
            None,
            &[
                "annotation polyaxon.com/unique-name: sub-path",
                "element of 256 bytes",
            ],
        ),
        (
            "unique name: invisible part",
            POD,
            annotated(None, Some("user.pro\u{FEFF}ject.42"), "outputs1"),
            None,
            &["annotation polyaxon.com/unique-name", "U+FEFF"],
        ),
        (
            "namespace/name: long name",
            named(long_name),
            annotated(None, None, "outputs1"),
            None,
            &["the pod's <namespace>/<name>", "element of 256 bytes"],
        ),
        (
            "namespace/job name: long Job name",
            PodIdentity {
                job: Some(long_name),
                ..POD
            },
            annotated(None, None, "outputs1"),
            None,
            &["the pod's <namespace>/<job name>", "element of 256 bytes"],
        ),
        (
            "namespace/job name: a Job name with '..' cannot leave the namespace",
            PodIdentity {
                job: Some("../other"),
                ..POD
            },
            annotated(None, None, "outputs1"),
            None,
            &["the pod's <namespace>/<job name>", "'..' segments"],
        ),
        (
            "generateName + uid",
            generated,
            annotated(None, None, "outputs1"),
            None,
            &[
                "the pod's <namespace>/<generateName><uid>",
                "element of 287 bytes",
                "limit of 255 bytes",
            ],
        ),
        (
            "recorded path kept under the store",
            POD,
            annotated(None, None, "outputs1"),
            Some(format!("/outputs/1/default/{long}")),
            &[
                "the outputsPath recorded in annotation polyaxon.com/persistence-injected",
                "element of 256 bytes",
            ],
        ),
        (
            "recorded path with a bidi control",
            POD,
            annotated(None, None, "outputs1"),
            Some("/outputs/1/default/\u{2067}x".to_owned()),
            &["the outputsPath recorded", "U+2067"],
        ),
    ];
    for (what, pod, a, recorded, fragments) in cases {
        let err = resolve(&c, pod, &a, recorded.as_deref(), ["main"])
            .expect_err(what)
            .to_string();
        for f in fragments {
            assert!(err.contains(f), "{what}: {f:?} not in {err:?}");
        }
        assert!(err.len() < 2048, "{what}: {} bytes", err.len());
    }
    // Just inside the limits: a 255-byte element, patched.
    let ok = resolve(
        &c,
        POD,
        &annotated(Some(&"e".repeat(255)), None, "outputs1"),
        None,
        ["main"],
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn denials_stay_small_whatever_the_input() {
    // 10,000 stores available everywhere: the list is clipped.
    let mut yaml = String::from("data:\n");
    for i in 0..10_000 {
        yaml.push_str(&format!("  store-{i:05}: {{mountPath: /d/{i}}}\n"));
    }
    let big = Config::from_yaml(&yaml).expect("valid");
    let err = resolve(&big, POD, &ann(Some("data: [nope]")), None, ["main"])
        .expect_err("unknown")
        .to_string();
    assert!(err.contains("data: store-00000, store-00001, "), "{err}");
    assert!(err.contains(" and 9,980 more; outputs: none"), "{err}");
    assert!(err.len() < 2048, "{} bytes", err.len());

    // 5,000 containers and an unknown one: the names are clipped.
    let names: Vec<String> = (0..5_000).map(|i| format!("c-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let err = resolve(
        &config(),
        POD,
        &ann(Some("containers: [c-1, nope]")),
        None,
        refs.iter().copied(),
    )
    .expect_err("unknown container")
    .to_string();
    assert!(err.contains("containers names \"nope\""), "{err}");
    assert!(
        err.contains("it has: c-0, c-1, ") && err.contains(" and 4,980 more)"),
        "{err}"
    );
    assert!(err.len() < 2048, "{} bytes", err.len());

    // A huge namespace, container name and store name at once.
    let ns: &'static str = Box::leak("n\n".repeat(100_000).into_boxed_str());
    let pod = PodIdentity {
        namespace: ns,
        ..POD
    };
    let err = resolve(
        &config(),
        pod,
        &ann(Some(&format!("data: [{}]", "x".repeat(100_000)))),
        None,
        ["main"],
    )
    .expect_err("unknown")
    .to_string();
    assert!(err.len() < 2048, "{} bytes", err.len());
    assert!(!err.contains('\n'), "newlines are escaped: {err}");
}

#[test]
fn many_containers_and_names_resolve_in_linear_time() {
    // Not a timing: 20,000 names against 20,000 containers would be
    // 4 * 10^8 comparisons with a scan per name; hashed it is instant
    // even in a debug build.
    let names: Vec<String> = (0..20_000).map(|i| format!("c-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let list = format!(
        "containers: [{}]\ndata: [{}]",
        names.join(", "),
        ["data1"; 20_000].join(", ")
    );
    let c = config();
    let got = resolve(&c, POD, &ann(Some(&list)), None, refs.iter().copied()).expect("all known");
    assert_eq!(got.containers.map(|c| c.len()), Some(20_000));
    assert_eq!(got.data.len(), 1, "deduplicated");
}

#[test]
fn no_outputs_when_none_available() {
    let c = Config::from_yaml(
        "data: {d: {mountPath: /d}}\noutputs: {o: {mountPath: /o, namespaces: [x]}}",
    )
    .expect("valid");
    let got = resolve(&c, POD, &ann(None), None, ["main"]).expect("ok");
    assert!(got.outputs.is_none());
    assert_eq!(got.data.len(), 1);
}

#[test]
fn billion_laughs_is_refused_not_expanded() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        yaml.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    yaml.push_str("data: *a11\n");
    let err = resolve(&config(), POD, &ann(Some(&yaml)), None, ["main"]).expect_err("refused");
    assert!(
        err.to_string().contains("is not a valid selection"),
        "{err}"
    );
}
