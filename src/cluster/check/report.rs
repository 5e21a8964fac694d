//! The report: checks in groups, each passed, warned, failed or skipped,
//! printed for people (like `linkerd check`) or as JSON for tools, and the
//! exit status it implies. Knows nothing of Kubernetes.

use std::fmt::Write as _;

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Passed,
    /// Works, but something will bite later (expiry, a loose setting).
    Warning,
    /// Broken: pods will not get their stores, or will not start.
    Failed,
    /// Not run, because what it needs failed above (or does not apply).
    Skipped,
}

impl Status {
    fn symbol(self) -> &'static str {
        match self {
            Status::Passed => "√",
            Status::Warning => "‼",
            Status::Failed => "×",
            Status::Skipped => "-",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable name for tools (`webhook-exists`, `secret`, ...).
    pub id: &'static str,
    /// What is checked, e.g. "caBundle verifies the serving certificate".
    pub title: String,
    /// The outcome.
    pub result: Status,
    /// What was found.
    pub detail: String,
    /// For a warning or a failure: the command to run or the field to fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn pass(id: &'static str, title: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(id, title, Status::Passed, detail, None)
    }

    /// A warning, with what to do about it.
    pub fn warn(
        id: &'static str,
        title: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check::new(id, title, Status::Warning, detail, Some(hint.into()))
    }

    /// A failure, with what to do about it.
    pub fn fail(
        id: &'static str,
        title: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check::new(id, title, Status::Failed, detail, Some(hint.into()))
    }

    /// A check not run, and why.
    pub fn skip(id: &'static str, title: impl Into<String>, why: impl Into<String>) -> Check {
        Check::new(id, title, Status::Skipped, why, None)
    }

    fn new(
        id: &'static str,
        title: impl Into<String>,
        result: Status,
        detail: impl Into<String>,
        hint: Option<String>,
    ) -> Check {
        Check {
            id,
            title: title.into(),
            result,
            detail: detail.into(),
            hint,
        }
    }

    /// Whether it passed (for the checks that later ones depend on).
    pub fn passed(&self) -> bool {
        self.result == Status::Passed
    }
}

/// A named group of checks ("webhook configuration", "namespace team-a").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The group's heading.
    pub name: String,
    /// Its checks, in order.
    pub checks: Vec<Check>,
}

/// How many checks ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Passed.
    pub passed: usize,
    /// Warnings.
    pub warnings: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The groups, in the order they were checked.
    pub groups: Vec<Group>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    success: bool,
    summary: Summary,
    groups: &'a [Group],
}

impl Report {
    /// Appends a group.
    pub fn push(&mut self, name: impl Into<String>, checks: Vec<Check>) {
        self.groups.push(Group {
            name: name.into(),
            checks,
        });
    }

    /// Every check, with its group's name.
    pub fn checks(&self) -> impl Iterator<Item = (&str, &Check)> {
        self.groups
            .iter()
            .flat_map(|g| g.checks.iter().map(move |c| (g.name.as_str(), c)))
    }

    /// The counts.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for (_, c) in self.checks() {
            match c.result {
                Status::Passed => s.passed += 1,
                Status::Warning => s.warnings += 1,
                Status::Failed => s.failed += 1,
                Status::Skipped => s.skipped += 1,
            }
        }
        s
    }

    /// True when nothing failed (warnings allowed): exit status 0.
    pub fn success(&self) -> bool {
        self.summary().failed == 0
    }

    /// The report for people: a heading per group, one line per check,
    /// the hint under each warning and failure, then the summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for g in &self.groups {
            let _ = writeln!(out, "{}\n{}", g.name, "-".repeat(g.name.chars().count()));
            for c in &g.checks {
                let mut lines = c.detail.lines();
                let first = lines.next().unwrap_or_default();
                if first.is_empty() {
                    let _ = writeln!(out, "{} {}", c.result.symbol(), c.title);
                } else {
                    let _ = writeln!(out, "{} {}: {first}", c.result.symbol(), c.title);
                }
                for more in lines {
                    let _ = writeln!(out, "    {more}");
                }
                if let Some(hint) = &c.hint {
                    let _ = writeln!(out, "    hint: {hint}");
                }
            }
            out.push('\n');
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "Summary: {} passed, {} warning{}, {} failed, {} skipped",
            s.passed,
            s.warnings,
            if s.warnings == 1 { "" } else { "s" },
            s.failed,
            s.skipped
        );
        if s.failed == 0 {
            let _ = writeln!(out, "√ persistence-webhook is healthy");
        } else {
            let _ = writeln!(
                out,
                "× {} check{} failed: see the hints above",
                s.failed,
                if s.failed == 1 { "" } else { "s" }
            );
        }
        out
    }

    /// The same content as JSON: `{success, summary, groups: [{name,
    /// checks: [{id, title, result, detail, hint}]}]}`.
    pub fn json(&self) -> String {
        let body = JsonReport {
            success: self.success(),
            summary: self.summary(),
            groups: &self.groups,
        };
        serde_json::to_string_pretty(&body).expect("the report is plain data") + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::default();
        r.push(
            "webhook configuration",
            vec![
                Check::pass("webhook-exists", "exists", "persistence-webhook"),
                Check::warn(
                    "webhook-failure-policy",
                    "failurePolicy",
                    "Ignore",
                    "set Fail",
                ),
            ],
        );
        r.push(
            "namespace team-a",
            vec![
                Check::fail(
                    "secret",
                    "Secret gcs-secret",
                    "not found\nneeded by data-gcs",
                    "kubectl -n team-a create secret generic gcs-secret",
                ),
                Check::skip("probe", "probe", "no valid config"),
            ],
        );
        r
    }

    #[test]
    fn text_has_a_line_per_check_hints_and_a_summary() {
        let text = sample().text();
        for want in [
            "webhook configuration\n---------------------\n",
            "√ exists: persistence-webhook\n",
            "‼ failurePolicy: Ignore\n    hint: set Fail\n",
            "× Secret gcs-secret: not found\n    needed by data-gcs\n    hint: kubectl -n team-a create secret generic gcs-secret\n",
            "- probe: no valid config\n",
            "Summary: 1 passed, 1 warning, 1 failed, 1 skipped\n",
            "× 1 check failed",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
    }

    #[test]
    fn json_carries_the_same_content_and_the_verdict() {
        let r = sample();
        let v: serde_json::Value = serde_json::from_str(&r.json()).expect("JSON");
        assert_eq!(v["success"], false);
        assert_eq!(
            v["summary"],
            serde_json::json!({"passed": 1, "warnings": 1, "failed": 1, "skipped": 1})
        );
        assert_eq!(v["groups"][1]["name"], "namespace team-a");
        let c = &v["groups"][1]["checks"][0];
        assert_eq!(c["id"], "secret");
        assert_eq!(c["result"], "failed");
        assert_eq!(
            c["hint"],
            "kubectl -n team-a create secret generic gcs-secret"
        );
        assert!(v["groups"][0]["checks"][0].get("hint").is_none());
        let mut ok = Report::default();
        ok.push("g", vec![Check::pass("a", "a", "")]);
        assert!(ok.success());
        assert!(ok.text().contains("√ persistence-webhook is healthy"));
        assert!(!r.success());
    }
}
