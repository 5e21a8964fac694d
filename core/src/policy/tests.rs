//! The generator's own tests: what it refuses, and the shape of what it
//! writes. Whether the API server stores the same pod as the webhook is
//! the e2e test's (tests/e2e_policy.rs).

use super::*;

fn kinds(objects: &[Value]) -> Vec<&str> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default())
        .collect()
}

#[test]
fn the_example_compiles_into_four_objects() {
    let objects = generate(&Config::example(), &Options::default()).expect("example compiles");
    assert_eq!(
        kinds(&objects),
        [
            "MutatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    let spec = &objects[0]["spec"];
    assert_eq!(spec["reinvocationPolicy"], "IfNeeded");
    assert_eq!(spec["mutations"][0]["patchType"], "JSONPatch");
    let conditions: Vec<&str> = spec["matchConditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect();
    assert!(
        conditions.contains(&"no-selection-annotation"),
        "{conditions:?}"
    );
    for v in spec["variables"].as_array().expect("variables") {
        let size = v["expression"].as_str().map_or(0, |e| e.chars().count());
        assert!(size <= MAX_EXPRESSION_CODE_POINTS, "{}: {size}", v["name"]);
    }
}

/// Every message the policy takes from the core is filled in whole: a
/// hole the core's format no longer writes as the sentinel would leave the
/// sentinel in the policy's text.
#[test]
fn no_sentinel_is_left_in_the_messages() {
    let sdk = Config::from_yaml(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/persistence-sdk.yaml"
        ))
        .expect("the example is there"),
    )
    .expect("valid example");
    // A sentinel as a CEL literal writes it: raw, and its `{:?}` form.
    let mut sentinels = vec![cel::NUMBER.to_string(), format!("{:X}", u32::MAX)];
    for i in 0..8 {
        let (raw, debug) = cel::sentinel(i);
        for s in [raw, debug] {
            let quoted = cel::lit(&s);
            sentinels.push(quoted[1..quoted.len() - 1].to_owned());
        }
    }
    for config in [Config::example(), sdk] {
        let objects = generate(&config, &Options::default()).expect("compiles");
        let spec = &objects[0]["spec"];
        let mut expressions: Vec<&str> = spec["variables"]
            .as_array()
            .expect("variables")
            .iter()
            .filter_map(|v| v["expression"].as_str())
            .collect();
        expressions.extend(spec["mutations"][0]["jsonPatch"]["expression"].as_str());
        let text = expressions.join("\n");
        for sentinel in &sentinels {
            assert!(!text.contains(sentinel), "{sentinel:?} left in the policy");
        }
        for want in [
            "must not contain a backslash (at byte ",
            "'): Windows nodes read it as a separator",
            "' bytes long (' + variables.cfg.outBaseDebug + \" + '/' + the sub-path)",
        ] {
            assert!(text.contains(want), "{want:?} not in the policy");
        }
    }
}

#[test]
fn volume_names_that_can_meet_are_refused() {
    let long = "a".repeat(60);
    let config = Config::from_yaml(&format!(
        "data:\n  {long}x: {{mountPath: /d/1}}\n  {long}y: {{mountPath: /d/2}}\n"
    ))
    .expect("valid config");
    let err = generate(&config, &Options::default()).expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains(&format!("data store \"{long}x\"")), "{msg}");
    assert!(msg.contains("same pod volume name"), "{msg}");
}

#[test]
fn more_stores_than_the_cost_budget_affords_are_refused_with_the_limit() {
    let mut yaml = String::from("data:\n");
    for i in 0..=MAX_STORES_PER_NAMESPACE {
        yaml.push_str(&format!("  d{i}: {{mountPath: /d/{i}}}\n"));
    }
    let config = Config::from_yaml(&yaml).expect("valid config");
    let msg = generate(&config, &Options::default())
        .expect_err("too many")
        .to_string();
    assert!(msg.contains("101 stores"), "{msg}");
    assert!(msg.contains("limit of 100 stores per namespace"), "{msg}");
    assert!(msg.contains("namespaces the config does not name"), "{msg}");
}

#[test]
fn a_config_past_the_expression_limit_is_refused_with_the_limit() {
    // Namespaces each with a store of their own: one class per namespace.
    let mut yaml = String::from("data:\n");
    for i in 0..3000 {
        yaml.push_str(&format!(
            "  d{i}: {{mountPath: /d/{i}, namespaces: [team-{i}]}}\n"
        ));
    }
    let config = Config::from_yaml(&yaml).expect("valid config");
    let err = generate(&config, &Options::default()).expect_err("too large");
    let msg = err.to_string();
    assert!(
        msg.contains("over the API server's limit of 100000"),
        "{msg}"
    );
    assert!(msg.contains("3000 stores"), "{msg}");
}

/// The config sizes at which the generator refuses for the parser limit
/// (the figures in docs/src/operators/policy-mode.md):
/// `cargo test -p persistence-webhook-core --lib policy::tests::limits -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, printed"]
fn limits() {
    let fits = |yaml: &str| {
        generate(
            &Config::from_yaml(yaml).expect("valid"),
            &Options::default(),
        )
        .is_ok()
    };
    // Namespace classes: one scoped volume store per namespace.
    let classes = |n: usize| {
        let mut y = String::from("data:\n");
        for i in 0..n {
            y.push_str(&format!(
                "  d{i}: {{mountPath: /d/{i}, namespaces: [team-{i}]}}\n"
            ));
        }
        y
    };
    // Stores all available everywhere: volume data stores (refused past
    // MAX_STORES_PER_NAMESPACE first).
    let stores = |n: usize| {
        let mut y = String::from("data:\n");
        for i in 0..n {
            y.push_str(&format!("  d{i}: {{mountPath: /d/{i}}}\n"));
        }
        y
    };
    // Cloud stores everywhere (keyed S3 with SDK keys: the widest entries).
    let clouds = |n: usize| {
        let mut y = String::from("data:\n");
        for i in 0..n {
            y.push_str(&format!("  s{i}: {{store: s3, bucket: \"s3://bucket-{i}\", secret: s{i}, secretKey: k{i}.json}}\n"));
        }
        y
    };
    for (what, make) in [
        ("namespace classes", &classes as &dyn Fn(usize) -> String),
        ("volume stores available everywhere", &stores),
        ("keyed bucket stores available everywhere", &clouds),
    ] {
        let (mut lo, mut hi) = (1, 4096);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if fits(&make(mid)) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        println!("{what}: {lo} fit, {hi} refused");
    }
}

/// `--hybrid` changes the policies by one condition each, the complement
/// of the webhook registration's; the bindings and the rest are the same,
/// and both policies stay within the API server's 64 conditions.
#[test]
fn hybrid_adds_the_complement_of_the_webhooks_pods_and_nothing_else() {
    let config = Config::example();
    let pure = generate(&config, &Options::default()).expect("example compiles");
    let hybrid_options = Options {
        hybrid: true,
        ..Options::default()
    };
    let mixed = generate(&config, &hybrid_options).expect("example compiles");
    assert_eq!(pure.len(), mixed.len());
    for (p, m) in pure.iter().zip(&mixed) {
        let kind = p["kind"].as_str().unwrap_or_default();
        if !kind.ends_with("Policy") {
            assert_eq!(p, m, "{kind}");
            continue;
        }
        let conditions = m["spec"]["matchConditions"].as_array().expect("conditions");
        assert!(conditions.len() <= 64, "{kind}: {}", conditions.len());
        assert_eq!(
            conditions.last(),
            Some(&hybrid::policy_condition()),
            "{kind}"
        );
        let mut without = m.clone();
        if let Some(list) = without["spec"]["matchConditions"].as_array_mut() {
            list.pop();
        }
        assert_eq!(p, &without, "{kind}");
    }
}
