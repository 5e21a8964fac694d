//! The webhook entry's `matchConditions` (CEL, Kubernetes 1.28+) read
//! offline: which condition would keep a given pod CREATE from the webhook,
//! and which condition keeps every pod from it. Pure.
//!
//! The API server is the authority on CEL; this room evaluates a small,
//! exact subset of it and says "not evaluated offline" for anything else,
//! never a guess. The subset covers the conditions the manifests ship and
//! the usual forms of the Kubernetes documentation: literals (strings,
//! integers, booleans, `null`, lists), `request.*`, `object.*` and
//! `oldObject` field selection and `[...]` indexing, `has(...)`, `!`, `&&`,
//! `||` (with CEL's commutative error and unknown absorption), `==`, `!=`,
//! `in` (list or map keys), parentheses, `size(...)`, and the string
//! methods `startsWith`, `endsWith` and `contains`. What the caller does not
//! know (the requesting user of a stored pod, say) is unknown, and so is
//! every condition whose value depends on it.
//!
//! A condition that is false with every input unknown is false for every
//! request: the API server never calls the webhook at all.

use std::fmt;

use serde_json::{json, Value};

use crate::cluster::check::objects::MatchCondition;

/// What one condition says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It holds: this condition lets the request through.
    True,
    /// It does not hold: the API server skips the webhook.
    False,
    /// CEL would fail at run time (a missing field, a type mismatch): the
    /// API server applies the failurePolicy.
    Error(String),
    /// Not evaluated offline: outside the subset, or it reads what the
    /// caller does not know.
    Unknown(String),
}

/// The request the conditions are evaluated against, as the API server
/// binds it: `request` (the AdmissionRequest's fields), `object` and
/// `oldObject`; `unknown` lists the dotted paths the caller cannot know
/// (e.g. `request.userInfo`), which make any condition reading them
/// unknown.
#[derive(Debug, Clone)]
pub struct Bindings<'a> {
    /// `request`, without `object`.
    pub request: Value,
    /// `object`: the pod as the webhook would receive it.
    pub object: &'a Value,
    /// Dotted paths that are unknown.
    pub unknown: Vec<&'static str>,
}

impl<'a> Bindings<'a> {
    /// A pod CREATE in `namespace`, as the API server would send it for
    /// `pod`. The requesting user is unknown; `dry_run` is whether the
    /// request was one.
    pub fn pod_create(pod: &'a Value, namespace: &str, dry_run: bool) -> Bindings<'a> {
        // A generateName pod has no name yet when admission runs.
        let generated = pod["metadata"]["generateName"]
            .as_str()
            .is_some_and(|g| !g.is_empty());
        let name = match pod["metadata"]["name"].as_str() {
            Some(n) if !generated => n,
            _ => "",
        };
        Bindings {
            request: json!({
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "subResource": "",
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "requestSubResource": "",
                "name": name,
                "namespace": namespace,
                "operation": "CREATE",
                "dryRun": dry_run,
            }),
            object: pod,
            unknown: vec!["request.userInfo", "request.uid", "request.options"],
        }
    }
}

/// One condition of the entry and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The condition's name.
    pub name: String,
    /// Its CEL expression.
    pub expression: String,
    /// Its value for the request.
    pub outcome: Outcome,
}

/// The entry's conditions in order, each evaluated against `bindings`.
pub fn evaluate(conditions: &[MatchCondition], bindings: &Bindings<'_>) -> Vec<Judged> {
    conditions
        .iter()
        .map(|c| Judged {
            name: c.name.clone(),
            expression: c.expression.clone(),
            outcome: eval_text(&c.expression, bindings),
        })
        .collect()
}

/// The first condition that is false: the one the API server names when it
/// skips the webhook (any false condition skips it, whatever the others say).
pub fn excluding(judged: &[Judged]) -> Option<&Judged> {
    judged.iter().find(|j| j.outcome == Outcome::False)
}

/// The names of the conditions whose value is not known offline
/// ([`Outcome::Unknown`], [`Outcome::Error`]): any of them may have kept
/// the request from the webhook.
pub fn unevaluated(judged: &[Judged]) -> Vec<&str> {
    judged
        .iter()
        .filter(|j| matches!(j.outcome, Outcome::Unknown(_) | Outcome::Error(_)))
        .map(|j| j.name.as_str())
        .collect()
}

/// Whether `expression` is false for every request (it is false with every
/// input unknown).
pub fn always_false(expression: &str) -> bool {
    let nothing = Value::Null;
    let bindings = Bindings {
        request: Value::Null,
        object: &nothing,
        unknown: vec![
            "request",
            "object",
            "oldObject",
            "params",
            "namespaceObject",
            "authorizer",
            "variables",
        ],
    };
    eval_text(expression, &bindings) == Outcome::False
}

/// Whether `expression` reads `request.dryRun` (a dry run must get the
/// same answer as the real request, SPEC §5).
pub fn reads_dry_run(expression: &str) -> bool {
    parse(expression).is_ok_and(|e| e.reads("request.dryRun"))
}

/// Evaluates one expression.
pub fn eval_text(expression: &str, bindings: &Bindings<'_>) -> Outcome {
    let expr = match parse(expression) {
        Ok(e) => e,
        Err(why) => return Outcome::Unknown(why),
    };
    match eval(&expr, bindings) {
        Ok(Val::Json(Value::Bool(true))) => Outcome::True,
        Ok(Val::Json(Value::Bool(false))) => Outcome::False,
        Ok(Val::Json(other)) => Outcome::Error(format!("it gives {other}, not a bool")),
        Ok(Val::Unknown(why)) => Outcome::Unknown(why),
        Err(e) => Outcome::Error(e),
    }
}

// ---- the parser -------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Punct(&'static str),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    const PUNCT: [&str; 12] = [
        "&&", "||", "==", "!=", "!", "(", ")", "[", "]", ",", ".", "-",
    ];
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
        } else if c == '\'' || c == '"' {
            let mut value = String::new();
            let mut chars = rest[1..].char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("an unterminated string".into()),
                    Some((i, q)) if q == c => break i + 2,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, e @ ('\\' | '\'' | '"'))) => value.push(e),
                        _ => return Err("a string escape outside the subset".into()),
                    },
                    Some((_, ch)) => value.push(ch),
                }
            };
            out.push(Tok::Str(value));
            rest = &rest[end..];
        } else if c.is_ascii_digit() {
            let len = rest
                .find(|d: char| !d.is_ascii_digit())
                .unwrap_or(rest.len());
            let n = rest[..len]
                .parse()
                .map_err(|_| "an integer out of range".to_owned())?;
            out.push(Tok::Int(n));
            rest = &rest[len..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let len = rest
                .find(|d: char| !(d.is_ascii_alphanumeric() || d == '_'))
                .unwrap_or(rest.len());
            out.push(Tok::Ident(rest[..len].to_owned()));
            rest = &rest[len..];
        } else if let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) {
            out.push(Tok::Punct(p));
            rest = &rest[p.len()..];
        } else {
            return Err(format!("{c:?} is outside the subset"));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Lit(Value),
    List(Vec<Expr>),
    Ident(String),
    Select(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Has(Box<Expr>, String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>, bool),
    In(Box<Expr>, Box<Expr>),
    Size(Box<Expr>),
    Method(Box<Expr>, String, Box<Expr>),
}

impl Expr {
    /// `a.b.c` for an identifier chain.
    fn path(&self) -> Option<String> {
        match self {
            Expr::Ident(i) => Some(i.clone()),
            Expr::Select(base, f) => Some(format!("{}.{f}", base.path()?)),
            _ => None,
        }
    }

    fn reads(&self, path: &str) -> bool {
        if self.path().is_some_and(|p| p == path) {
            return true;
        }
        match self {
            Expr::Lit(_) | Expr::Ident(_) => false,
            Expr::List(items) => items.iter().any(|e| e.reads(path)),
            Expr::Select(b, _) | Expr::Has(b, _) | Expr::Not(b) | Expr::Neg(b) | Expr::Size(b) => {
                b.reads(path)
            }
            Expr::Index(a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Eq(a, b, _)
            | Expr::In(a, b)
            | Expr::Method(a, _, b) => a.reads(path) || b.reads(path),
        }
    }
}

/// Nesting deeper than this is refused (an expression is at most 5,000
/// characters on the API server; this keeps the recursion small).
const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
}

fn parse(s: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: lex(s)?,
        at: 0,
        depth: 0,
    };
    let e = p.or()?;
    match p.toks.get(p.at) {
        None => Ok(e),
        Some(t) => Err(format!("{} is outside the subset", shown(t))),
    }
}

fn shown(t: &Tok) -> String {
    match t {
        Tok::Ident(i) => i.clone(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Int(n) => n.to_string(),
        Tok::Punct(p) => (*p).to_owned(),
    }
}

impl Parser {
    fn peek(&self, p: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Punct(q)) if *q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        let hit = self.peek(p);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn expect(&mut self, p: &str) -> Result<(), String> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(format!("expected {p}"))
        }
    }

    fn deeper(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, String> {
        self.deeper()?;
        let mut e = self.and()?;
        while self.eat("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.relation()?;
        while self.eat("&&") {
            e = Expr::And(Box::new(e), Box::new(self.relation()?));
        }
        Ok(e)
    }

    fn relation(&mut self) -> Result<Expr, String> {
        let left = self.unary()?;
        if self.eat("==") {
            return Ok(Expr::Eq(Box::new(left), Box::new(self.unary()?), true));
        }
        if self.eat("!=") {
            return Ok(Expr::Eq(Box::new(left), Box::new(self.unary()?), false));
        }
        if matches!(self.toks.get(self.at), Some(Tok::Ident(i)) if i == "in") {
            self.at += 1;
            return Ok(Expr::In(Box::new(left), Box::new(self.unary()?)));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.deeper()?;
        let e = if self.eat("!") {
            Expr::Not(Box::new(self.unary()?))
        } else if self.eat("-") {
            Expr::Neg(Box::new(self.unary()?))
        } else {
            self.member()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn member(&mut self) -> Result<Expr, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Tok::Ident(f)) = self.toks.get(self.at).cloned() else {
                    return Err("expected a field name after .".into());
                };
                self.at += 1;
                if self.eat("(") {
                    if !matches!(f.as_str(), "startsWith" | "endsWith" | "contains") {
                        return Err(format!("the method {f} is outside the subset"));
                    }
                    let arg = self.or()?;
                    self.expect(")")?;
                    e = Expr::Method(Box::new(e), f, Box::new(arg));
                } else {
                    e = Expr::Select(Box::new(e), f);
                }
            } else if self.eat("[") {
                let i = self.or()?;
                self.expect("]")?;
                e = Expr::Index(Box::new(e), Box::new(i));
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(t) = self.toks.get(self.at).cloned() else {
            return Err("the expression ends too early".into());
        };
        self.at += 1;
        match t {
            Tok::Str(s) => Ok(Expr::Lit(Value::String(s))),
            Tok::Int(n) => Ok(Expr::Lit(Value::from(n))),
            Tok::Punct("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("[") => {
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.or()?);
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Expr::List(items))
            }
            Tok::Ident(i) => match i.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                "has" | "size" if self.peek("(") => {
                    self.at += 1;
                    let arg = self.or()?;
                    self.expect(")")?;
                    if i == "size" {
                        return Ok(Expr::Size(Box::new(arg)));
                    }
                    match arg {
                        Expr::Select(base, f) => Ok(Expr::Has(base, f)),
                        _ => Err("has() takes a field selection".into()),
                    }
                }
                _ if self.peek("(") => Err(format!("the function {i} is outside the subset")),
                _ => Ok(Expr::Ident(i)),
            },
            other => Err(format!("{} is outside the subset", shown(&other))),
        }
    }
}

// ---- the evaluator ----------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Json(Value),
    Unknown(String),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Json(v) => write!(f, "{v}"),
            Val::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

type Res = Result<Val, String>;

fn unknown_path(path: &str, bindings: &Bindings<'_>) -> Option<Val> {
    bindings
        .unknown
        .iter()
        .find(|u| path == **u || path.starts_with(&format!("{u}.")))
        .map(|u| Val::Unknown(format!("it reads {u}, which is not known here")))
}

fn field(base: Val, f: &str) -> Res {
    match base {
        Val::Unknown(w) => Ok(Val::Unknown(w)),
        Val::Json(Value::Object(m)) => m
            .get(f)
            .cloned()
            .map(Val::Json)
            .ok_or_else(|| format!("no such key: {f}")),
        Val::Json(other) => Err(format!("no field {f} on {other}")),
    }
}

fn boolean(r: &Res) -> Option<bool> {
    match r {
        Ok(Val::Json(Value::Bool(b))) => Some(*b),
        _ => None,
    }
}

/// `&&` (`want` false) or `||` (`want` true): either side equal to the
/// absorbing value decides, whatever the other side is (CEL's commutative
/// logic); otherwise an error wins over an unknown.
fn logic(l: Res, r: Res, absorbing: bool) -> Res {
    if boolean(&l) == Some(absorbing) || boolean(&r) == Some(absorbing) {
        return Ok(Val::Json(Value::Bool(absorbing)));
    }
    for side in [&l, &r] {
        match side {
            Err(e) => return Err(e.clone()),
            Ok(Val::Json(Value::Bool(_))) | Ok(Val::Unknown(_)) => {}
            Ok(Val::Json(v)) => return Err(format!("{v} is not a bool")),
        }
    }
    for side in [l, r] {
        if let Ok(Val::Unknown(w)) = side {
            return Ok(Val::Unknown(w));
        }
    }
    Ok(Val::Json(Value::Bool(!absorbing)))
}

fn eval(e: &Expr, b: &Bindings<'_>) -> Res {
    if let Some(path) = e.path() {
        if let Some(u) = unknown_path(&path, b) {
            return Ok(u);
        }
    }
    match e {
        Expr::Lit(v) => Ok(Val::Json(v.clone())),
        Expr::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                match eval(i, b)? {
                    Val::Json(v) => out.push(v),
                    u @ Val::Unknown(_) => return Ok(u),
                }
            }
            Ok(Val::Json(Value::Array(out)))
        }
        Expr::Ident(i) => match i.as_str() {
            "request" => Ok(Val::Json(b.request.clone())),
            "object" => Ok(Val::Json(b.object.clone())),
            "oldObject" => Ok(Val::Json(Value::Null)),
            other => Ok(Val::Unknown(format!("{other} is outside the subset"))),
        },
        Expr::Select(base, f) => field(eval(base, b)?, f),
        Expr::Index(base, i) => match (eval(base, b)?, eval(i, b)?) {
            (Val::Unknown(w), _) | (_, Val::Unknown(w)) => Ok(Val::Unknown(w)),
            (Val::Json(Value::Object(m)), Val::Json(Value::String(k))) => m
                .get(&k)
                .cloned()
                .map(Val::Json)
                .ok_or_else(|| format!("no such key: {k}")),
            (Val::Json(Value::Array(a)), Val::Json(Value::Number(n))) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| a.get(n))
                .cloned()
                .map(Val::Json)
                .ok_or_else(|| format!("index {n} out of range")),
            (base, i) => Err(format!("cannot index {base} with {i}")),
        },
        Expr::Has(base, f) => match eval(base, b)? {
            Val::Unknown(w) => Ok(Val::Unknown(w)),
            Val::Json(Value::Object(m)) => Ok(Val::Json(Value::Bool(
                m.get(f).is_some_and(|v| !v.is_null()),
            ))),
            Val::Json(other) => Err(format!("has() on {other}")),
        },
        Expr::Not(x) => match eval(x, b)? {
            Val::Json(Value::Bool(v)) => Ok(Val::Json(Value::Bool(!v))),
            u @ Val::Unknown(_) => Ok(u),
            Val::Json(other) => Err(format!("! of {other}")),
        },
        Expr::Neg(x) => match eval(x, b)? {
            Val::Json(Value::Number(n)) => n
                .as_i64()
                .and_then(i64::checked_neg)
                .map(|n| Val::Json(Value::from(n)))
                .ok_or_else(|| format!("cannot negate {n}")),
            u @ Val::Unknown(_) => Ok(u),
            Val::Json(other) => Err(format!("- of {other}")),
        },
        Expr::And(l, r) => logic(eval(l, b), eval(r, b), false),
        Expr::Or(l, r) => logic(eval(l, b), eval(r, b), true),
        Expr::Eq(l, r, equal) => match (eval(l, b)?, eval(r, b)?) {
            (Val::Unknown(w), _) | (_, Val::Unknown(w)) => Ok(Val::Unknown(w)),
            (Val::Json(l), Val::Json(r)) => Ok(Val::Json(Value::Bool((l == r) == *equal))),
        },
        Expr::In(x, container) => match (eval(x, b)?, eval(container, b)?) {
            (Val::Unknown(w), _) | (_, Val::Unknown(w)) => Ok(Val::Unknown(w)),
            (Val::Json(x), Val::Json(Value::Array(a))) => {
                Ok(Val::Json(Value::Bool(a.contains(&x))))
            }
            (Val::Json(Value::String(k)), Val::Json(Value::Object(m))) => {
                Ok(Val::Json(Value::Bool(m.contains_key(&k))))
            }
            (x, c) => Err(format!("{x} in {c}")),
        },
        Expr::Size(x) => match eval(x, b)? {
            u @ Val::Unknown(_) => Ok(u),
            Val::Json(Value::String(s)) => Ok(Val::Json(Value::from(s.chars().count()))),
            Val::Json(Value::Array(a)) => Ok(Val::Json(Value::from(a.len()))),
            Val::Json(Value::Object(m)) => Ok(Val::Json(Value::from(m.len()))),
            Val::Json(other) => Err(format!("size of {other}")),
        },
        Expr::Method(s, m, arg) => match (eval(s, b)?, eval(arg, b)?) {
            (Val::Unknown(w), _) | (_, Val::Unknown(w)) => Ok(Val::Unknown(w)),
            (Val::Json(Value::String(s)), Val::Json(Value::String(a))) => {
                Ok(Val::Json(Value::Bool(match m.as_str() {
                    "startsWith" => s.starts_with(&a),
                    "endsWith" => s.ends_with(&a),
                    _ => s.contains(&a),
                })))
            }
            (s, a) => Err(format!("{s}.{m}({a})")),
        },
    }
}

#[cfg(test)]
mod tests;
