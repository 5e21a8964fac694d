//! `persistence-webhook test DIR` (SPEC §6): a directory of cases, each the
//! manifests a repository holds and what the webhook must decide for them,
//! checked with the same code as `mutate` ([`crate::offline::dry_run`]), like
//! `kyverno test` or `gator verify`: a summary per case, each difference
//! shown, and a JUnit report for CI systems.
//!
//! A case is a file named `persistence-test.yaml` anywhere under `DIR`:
//!
//! ```yaml
//! name: training jobs get their stores   # optional: the file's directory
//! config: ../persistence.yaml            # paths are relative to this file
//! inputs: [manifests.yaml]               # streams or Lists, as `mutate` reads them
//! namespace: team-a                      # optional, as `mutate --namespace`
//! uid: 00000000-0000-0000-0000-000000000000  # optional, as `mutate --uid`
//! expect:
//!   - kind: Job                          # the object: kind, name and, if
//!     name: train                        # the name is not enough, namespace
//!     allowed:                           # allowed; each field given is compared
//!       data: [data1]
//!       outputs: outputs1                # null: no outputs store
//!       outputsPath: /outputs/1/team-a/train
//!   - kind: Pod
//!     name: bad-selection
//!     denied: unknown-store              # a Reason's stable name
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::bounds::Bounds;
use crate::flags::BoundsArgs;
use crate::offline::dry_run::{decide_all, Decided, Setting};
use crate::offline::io::{load_config, read};
use crate::offline::manifests::{self, Position};
use crate::review::{Decision, Reason};

/// Flags of `test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The directory searched for persistence-test.yaml files (recursively).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Also write a JUnit XML report here, for CI systems.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// The bounds on one review, as `serve` applies them.
    #[command(flatten)]
    pub bounds: BoundsArgs,
}

/// The file name that makes a case.
pub const CASE_FILE: &str = "persistence-test.yaml";

/// A case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CaseFile {
    #[serde(default)]
    name: Option<String>,
    config: PathBuf,
    inputs: Vec<PathBuf>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    expect: Vec<Expect>,
}

/// One expected outcome.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    allowed: Option<Allowed>,
    #[serde(default)]
    denied: Option<String>,
}

/// What an allowed pod got; each field given is compared.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Allowed {
    #[serde(default)]
    data: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    outputs: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    outputs_path: Option<Option<String>>,
}

/// A field given as `null` is `Some(None)`; an absent one stays `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The result of one expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `Kind namespace/name (document N)`, or what was looked for.
    pub subject: String,
    /// Empty when it passed; else each difference, one per line.
    pub differences: Vec<String>,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// The case file, as found under `DIR`.
    pub file: PathBuf,
    /// Each expectation's result; empty when the case could not run.
    pub checks: Vec<Checked>,
    /// Why the case could not run (a file, the config or an input).
    pub error: Option<String>,
}

impl CaseResult {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.differences.is_empty())
    }
}

/// Every case under `dir`, in path order, checked with `bounds`.
pub fn run(dir: &Path, bounds: Bounds) -> Result<Vec<CaseResult>> {
    let mut files = Vec::new();
    find(dir, &mut files).with_context(|| format!("cannot read {}", dir.display()))?;
    if files.is_empty() {
        bail!("no {CASE_FILE} under {}", dir.display());
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|file| {
            let name = file
                .parent()
                .and_then(|p| p.strip_prefix(dir).ok())
                .map(|p| p.display().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| ".".to_owned());
            match check_case(&file, bounds) {
                Ok((own, checks)) => CaseResult {
                    name: own.unwrap_or(name),
                    file,
                    checks,
                    error: None,
                },
                Err(e) => CaseResult {
                    name,
                    file,
                    checks: Vec::new(),
                    error: Some(format!("{e:#}")),
                },
            }
        })
        .collect())
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            find(&path, out)?;
        } else if entry.file_name() == CASE_FILE {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads a case, decides its inputs and checks each expectation.
fn check_case(file: &Path, bounds: Bounds) -> Result<(Option<String>, Vec<Checked>)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let case: CaseFile = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not a valid case", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let config_path = base.join(&case.config);
    let config = load_config(&config_path, "config")?;
    let setting = Setting {
        config: &config,
        bounds,
        namespace: case.namespace.as_deref(),
        uid: case.uid.as_deref().unwrap_or(crate::flags::DEFAULT_UID),
    };
    let mut decided: Vec<(String, Position, Decided)> = Vec::new();
    for input in &case.inputs {
        let path = base.join(input);
        let text = read(&path).with_context(|| format!("cannot read input {}", path.display()))?;
        let docs = manifests::parse(&text).with_context(|| format!("input {}", path.display()))?;
        let all =
            decide_all(&setting, &docs).with_context(|| format!("input {}", path.display()))?;
        let shown = input.display().to_string();
        decided.extend(all.into_iter().map(|(at, d)| (shown.clone(), at, d)));
    }
    let checks = case.expect.iter().map(|e| check(e, &decided)).collect();
    Ok((case.name, checks))
}

/// Finds the one object `want` names and compares what it got.
fn check(want: &Expect, decided: &[(String, Position, Decided)]) -> Checked {
    let looked_for = match &want.namespace {
        Some(ns) => format!("{} {ns}/{}", want.kind, want.name),
        None => format!("{} {}", want.kind, want.name),
    };
    let fail = |subject: String, why: String| Checked {
        subject,
        differences: vec![why],
    };
    let found: Vec<&(String, Position, Decided)> = decided
        .iter()
        .filter(|(_, _, d)| {
            d.kind == want.kind
                && d.name == want.name
                && want.namespace.as_ref().is_none_or(|ns| *ns == d.namespace)
        })
        .collect();
    let (input, at, d) = match found.as_slice() {
        [one] => *one,
        [] => {
            let all: Vec<String> = decided.iter().map(|(_, _, d)| d.label()).collect();
            return fail(
                looked_for,
                format!(
                    "not found among the Pods and workloads of the inputs ({})",
                    all.join(", ")
                ),
            );
        }
        many => {
            return fail(
                looked_for,
                format!("{} objects match: give its namespace", many.len()),
            )
        }
    };
    let subject = format!("{} ({input}, {at})", d.label());
    let mut differences = Vec::new();
    match (&d.decision, want) {
        (
            _,
            Expect {
                allowed: Some(_),
                denied: Some(_),
                ..
            },
        ) => differences.push("expect either allowed or denied, not both".to_owned()),
        (
            Decision::Denied(denial),
            Expect {
                denied: Some(reason),
                ..
            },
        ) => {
            let got = denial.reason().as_str();
            if got != reason {
                differences.push(format!("reason: expected {reason}, got {got} ({denial})"));
            }
            if Reason::ALL.iter().all(|r| r.as_str() != reason) {
                differences.push(format!("{reason:?} is not a reason the webhook gives"));
            }
        }
        (Decision::Denied(denial), _) => differences.push(format!(
            "expected allowed, got denied: {} ({denial})",
            denial.reason().as_str()
        )),
        (
            _,
            Expect {
                denied: Some(reason),
                ..
            },
        ) => differences.push(format!(
            "expected denied ({reason}), got allowed ({})",
            got_summary(d)
        )),
        (_, Expect { allowed, .. }) => compare(
            allowed.as_ref().unwrap_or(&Allowed::default()),
            d,
            &mut differences,
        ),
    }
    Checked {
        subject,
        differences,
    }
}

/// What the pod got, from its `persistence-injected` annotation.
fn got(d: &Decided) -> (Vec<String>, Option<String>, Option<String>) {
    let injected = d.injected().unwrap_or(Value::Null);
    let data = injected["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let text = |key: &str| injected[key].as_str().map(str::to_owned);
    (data, text("outputs"), text("outputsPath"))
}

fn got_summary(d: &Decided) -> String {
    let (data, outputs, path) = got(d);
    format!(
        "data: {}, outputs: {}, outputsPath: {}",
        json!(data),
        json!(outputs),
        json!(path)
    )
}

fn compare(want: &Allowed, d: &Decided, differences: &mut Vec<String>) {
    let (data, outputs, path) = got(d);
    let sorted = want.data.clone().map(|mut w| {
        w.sort();
        w
    });
    differ("data", sorted.as_ref(), &data, differences);
    differ("outputs", want.outputs.as_ref(), &outputs, differences);
    differ(
        "outputsPath",
        want.outputs_path.as_ref(),
        &path,
        differences,
    );
}

/// Records `field: expected W, got G` when an expectation is given and the
/// value differs.
fn differ<T: PartialEq + Serialize>(
    field: &str,
    want: Option<&T>,
    got: &T,
    differences: &mut Vec<String>,
) {
    if let Some(w) = want.filter(|w| *w != got) {
        differences.push(format!(
            "{field}: expected {}, got {}",
            json!(w),
            json!(got)
        ));
    }
}

/// The summary printed on stdout: each case, each failure's differences,
/// and the totals.
pub fn summary(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        let total = r.checks.len();
        let failed = r
            .checks
            .iter()
            .filter(|c| !c.differences.is_empty())
            .count();
        if r.passed() {
            let _ = writeln!(out, "PASS  {} ({total} expected outcomes)", r.name);
            continue;
        }
        match &r.error {
            Some(e) => {
                let _ = writeln!(out, "FAIL  {}: the case could not run\n      {e}", r.name);
            }
            None => {
                let _ = writeln!(
                    out,
                    "FAIL  {} ({failed} of {total} expected outcomes differ)",
                    r.name
                );
            }
        }
        for c in r.checks.iter().filter(|c| !c.differences.is_empty()) {
            let _ = writeln!(out, "      {}", c.subject);
            for d in &c.differences {
                let _ = writeln!(out, "        {d}");
            }
        }
    }
    let passed = results.iter().filter(|r| r.passed()).count();
    let _ = writeln!(
        out,
        "\n{} cases: {passed} passed, {} failed",
        results.len(),
        results.len() - passed
    );
    out
}

/// The JUnit XML report: a test suite per case, a test case per expected
/// outcome (or one failure when the case could not run).
pub fn junit(results: &[CaseResult]) -> Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("persistence-webhook test");
    for r in results {
        let mut suite = TestSuite::new(r.name.as_str());
        if let Some(e) = &r.error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_message("the case could not run")
                .set_description(e.as_str());
            let mut case = TestCase::new(r.file.display().to_string(), status);
            case.set_classname(r.name.as_str());
            suite.add_test_case(case);
        }
        for c in &r.checks {
            let status = if c.differences.is_empty() {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(c.differences[0].as_str())
                    .set_description(c.differences.join("\n"));
                s
            };
            let mut case = TestCase::new(c.subject.as_str(), status);
            case.set_classname(r.name.as_str());
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report
        .to_string()
        .map_err(|e| anyhow!("writing the JUnit report: {e}"))
}
