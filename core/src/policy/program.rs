//! The MutatingAdmissionPolicy's CEL: its variables and its JSON Patch,
//! the webhook's decision for a pod without a selection annotation
//! (SPEC §3-§5, §7) written out for the API server.
//!
//! What the config fixes is computed here, per namespace class: the stores,
//! their volumes, mounts and env vars, the SDK variables. What the pod
//! decides is left to CEL, in the webhook's order: the outputs sub-path
//! (recorded, annotation, unique name, Job, name, generateName + uid) and
//! its checks, the volume names (never one the pod uses for something
//! else), the denials (two of our mounts at one path, a container's mount
//! or env var in the way), then the operations: the injected annotation,
//! the volumes, and each init container's then each container's mounts and
//! env, appended as the webhook appends them. A pod the webhook would deny
//! gets only the denial annotation, for the validating policy to refuse.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::cel::{self, bind, fill, lit, quote_clip, sentinel};
use super::classes::Class;
use super::hybrid;
use super::PolicyError;
use crate::config::{Backend, EnvSource, Provider, Store};
use crate::k8s;
use crate::names;
use crate::patch::{default_store, describe, Conflict, GCS_KEY_DESCRIPTION};
use crate::selection::kubelet::SubPathError;
use crate::selection::{self, SelectionError, SubPathSource};
use crate::text::clip;
use crate::vocabulary::{
    sdk_env_group, ANNOTATION_INJECTED, ANNOTATION_OUTPUTS_SUBPATH, ANNOTATION_UNIQUE_NAME,
    ENV_ACCESS_KEYS, ENV_DATA_PATHS, ENV_OUTPUTS_PATH, GCS_CREDENTIALS_DIR, GCS_CREDENTIALS_VOLUME,
    POLICY_DENIED_ANNOTATION, SDK_ENV_GROUPS,
};

/// A pod whose sub-path would be `<namespace>/<generateName><uid>`: CEL
/// in admission policies has no `request.uid`, so the policy cannot give
/// it the webhook's sub-path and refuses it, saying so (the hybrid install
/// sends such pods to the webhook instead).
const NO_UID_HEAD: &str = "the pod has no name yet (generateName \"";
const NO_UID_TAIL: &str = "\") and no polyaxon.com/outputs-subpath or polyaxon.com/unique-name annotation and no Job as its controller: its outputs sub-path would be <namespace>/<generateName><admission uid>, and admission policies do not see the admission uid; give the pod a name or a sub-path annotation, or let the webhook admit it (hybrid install)";

/// The most decimal digits an alternate volume name's number can have: a
/// pod of 10 million volumes is far past the API server's request size.
const ALTERNATE_DIGITS: u32 = 7;

/// The policy's variables (name, CEL) in evaluation order, and its JSON
/// Patch expression.
pub(super) struct Program {
    pub(super) variables: Vec<(String, String)>,
    pub(super) patch: String,
}

/// A pod volume the policy may add: a volume store's, or one GCS key's.
struct VolumeItem {
    preferred: String,
    json: Value,
    /// The store or stores it serves, for messages.
    what: String,
    /// `alternate_volume_name(preferred, n)` without its `pw--<n>-` head,
    /// for n of 1 to [`ALTERNATE_DIGITS`] digits.
    rests: Vec<String>,
    credentials: bool,
}

fn rests(preferred: &str) -> Vec<String> {
    (1..=ALTERNATE_DIGITS)
        .map(|digits| {
            let n = 10_u32.pow(digits - 1).max(2);
            let full = names::alternate_volume_name(preferred, n);
            let head = format!("pw--{n}-");
            full.strip_prefix(&head).unwrap_or(&full).to_owned()
        })
        .collect()
}

/// One env var of a class, as CEL map entries (all strings).
struct EnvEntry {
    name: String,
    /// CEL expression of the value ("" for a secret reference).
    value: String,
    secret: String,
    key: String,
}

fn has_annotation(key: &str) -> String {
    format!(
        "(has(object.metadata.annotations) && {} in object.metadata.annotations)",
        lit(key)
    )
}

fn annotation(key: &str) -> String {
    format!("object.metadata.annotations[{}]", lit(key))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps of strings always serialise")
}

/// A JSON string's text between its quotes.
fn json_inner(s: &str) -> String {
    let quoted = to_json(&s);
    quoted[1..quoted.len() - 1].to_owned()
}

/// Builds the program, or says which store and which feature it cannot
/// express.
pub(super) fn program(classes: &[Class<'_>]) -> Result<Program, PolicyError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut var = |name: &str, expr: String| vars.push((name.to_owned(), expr));

    // --- the volume items every class draws from -----------------------
    let mut items: Vec<VolumeItem> = Vec::new();
    let mut item_of_store: HashMap<&str, usize> = HashMap::new();
    let mut item_of_key: BTreeMap<(String, String), usize> = BTreeMap::new();
    for class in classes {
        let stores = class.data.iter().chain(class.outputs.iter());
        for store in stores {
            if let Backend::Volume { volume, .. } = store.backend() {
                item_of_store.entry(store.name()).or_insert_with(|| {
                    items.push(VolumeItem {
                        preferred: store.volume_name().to_owned(),
                        json: volume.clone(),
                        what: describe(store),
                        rests: rests(store.volume_name()),
                        credentials: false,
                    });
                    items.len() - 1
                });
            }
        }
        if let Some((secret, key)) = gcs_key(class) {
            item_of_key
                .entry((secret.clone(), key.clone()))
                .or_insert_with(|| {
                    let volume = k8s::volume(
                        GCS_CREDENTIALS_VOLUME,
                        k8s::VolumeSource::SecretKey {
                            secret: &secret,
                            key: &key,
                        },
                    );
                    items.push(VolumeItem {
                        preferred: GCS_CREDENTIALS_VOLUME.to_owned(),
                        json: volume,
                        what: format!("the GCS key {key:?} of secret {secret:?}"),
                        rests: rests(GCS_CREDENTIALS_VOLUME),
                        credentials: true,
                    });
                    items.len() - 1
                });
        }
    }
    check_names_apart(&items)?;

    // --- tables the messages read ----------------------------------------
    var("esc", cel::debug_escapes());
    var("escClass", lit(&cel::debug_class()));
    var("invCodes", cel::invisible_codes());
    var("groups", sdk_groups());

    // --- who the pod is --------------------------------------------------
    var("ns", "request.namespace".to_owned());
    let named: Vec<String> = classes
        .iter()
        .enumerate()
        .skip(1)
        .flat_map(|(i, c)| {
            c.namespaces
                .iter()
                .map(move |ns| format!("{}: {i}", lit(ns)))
        })
        .collect();
    var(
        "cls",
        if named.is_empty() {
            "0".to_owned()
        } else {
            format!("{{{}}}[?variables.ns].orValue(0)", named.join(", "))
        },
    );
    let cfgs: Vec<String> = classes
        .iter()
        .map(|c| class_map(c, &item_of_store, &item_of_key))
        .collect();
    var("cfg", format!("[{}][variables.cls]", cfgs.join(", ")));
    var("podName", hybrid::POD_NAME.to_owned());
    var("job", hybrid::JOB_NAME.to_owned());

    // --- the outputs sub-path (SPEC §3) ----------------------------------
    // The outputsPath an earlier admission recorded, read from the
    // annotation in the exact form the webhook writes it.
    let canonical = r#"^\{"data":\[("[^"\\]*"(,"[^"\\]*")*)?\],"outputs":("[^"\\]*"|null),"outputsPath":("([^"\\]|\\")*"|null)\}$"#;
    var(
        "recorded",
        format!(
            "variables.cfg.out == '' || !{has} ? '' : {read}",
            has = has_annotation(ANNOTATION_INJECTED),
            read = bind(
                "a",
                &annotation(ANNOTATION_INJECTED),
                &format!(
                    "a.matches({re}) && a.endsWith('\"}}') ? a.substring(a.indexOf('\"outputsPath\":\"') + 15, a.size() - 2).replace('\\\\\"', '\"') : ''",
                    re = lit(canonical)
                )
            )
        ),
    );
    var(
        "kept",
        bind(
            "r",
            "variables.recorded.startsWith(variables.cfg.outBase + '/') ? variables.recorded.substring(variables.cfg.outBase.size() + 1) : ''",
            "r != '' && !r.startsWith('/') && !r.split('/').exists(s, s == '' || s == '.' || s == '..') && (variables.cfg.outIso == '' || (r.startsWith(variables.ns + '/') && r.size() > variables.ns.size() + 1)) ? r : ''",
        ),
    );
    let iso = |p: &str| format!("(variables.cfg.outIso != '' ? variables.ns + '/' + {p} : {p})");
    // Every value through string(): a variable read in another's literal
    // is typed dyn, and literals must be of one type.
    let cand = |src: &str, path: &str, fin: &str, err: &str| {
        format!(
            "{{'src': {}, 'path': string({path}), 'final': string({fin}), 'err': string({err})}}",
            lit(src)
        )
    };
    let (u_raw, u_debug) = sentinel(0);
    let unique_err = fill(
        &SelectionError::UniqueName {
            value: u_raw.clone(),
        }
        .to_string(),
        &[(u_debug, quote_clip("u", "uq"))],
    );
    let unique_map = "[u.split('.')].map(p, p.exists(x, x == '' || x.contains('/')) ? '' : \
        p.size() == 3 && p[2].matches('^[0-9]*$') ? p[0] + '/' + p[1] + '/experiments/' + p[2] : \
        p.size() == 4 && p[2].matches('^[0-9]*$') && p[3].matches('^[0-9]*$') ? p[0] + '/' + p[1] + '/groups/' + p[2] + '/' + p[3] : \
        p.size() == 4 && p[2] in ['jobs', 'builds', 'notebooks', 'tensorboards'] && p[3].matches('^[0-9]*$') ? p[0] + '/' + p[1] + '/' + p[2] + '/' + p[3] : '')[0]";
    let explicit = SubPathSource::Annotation(ANNOTATION_OUTPUTS_SUBPATH).to_string();
    let unique = SubPathSource::Annotation(ANNOTATION_UNIQUE_NAME).to_string();
    var(
        "cand",
        format!(
            "variables.cfg.out == '' ? {none} : variables.kept != '' ? {kept} : {has_explicit} ? {explicit} : {has_unique} ? {unique} : \
             variables.job != '' ? {job} : variables.podName != '' ? {pod} : has(object.metadata.generateName) ? {generated} : {uid}",
            none = cand("", "''", "''", "''"),
            kept = cand(
                &SubPathSource::Recorded.to_string(),
                "variables.kept",
                "variables.kept",
                "''"
            ),
            has_explicit = has_annotation(ANNOTATION_OUTPUTS_SUBPATH),
            explicit = bind(
                "x",
                &annotation(ANNOTATION_OUTPUTS_SUBPATH),
                &cand(&explicit, "x", &iso("x"), "''")
            ),
            has_unique = has_annotation(ANNOTATION_UNIQUE_NAME),
            unique = bind(
                "u",
                &annotation(ANNOTATION_UNIQUE_NAME),
                &bind(
                    "m",
                    unique_map,
                    &cand(
                        &unique,
                        &format!("(m == '' ? '' : {})", iso("m")),
                        &format!("(m == '' ? '' : {})", iso("m")),
                        &format!("(m == '' ? {unique_err} : '')")
                    )
                )
            ),
            job = cand(
                &SubPathSource::JobName.to_string(),
                "variables.ns + '/' + variables.job",
                "variables.ns + '/' + variables.job",
                "''"
            ),
            pod = cand(
                &SubPathSource::PodName.to_string(),
                "variables.ns + '/' + variables.podName",
                "variables.ns + '/' + variables.podName",
                "''"
            ),
            generated = cand(
                &SubPathSource::GenerateName.to_string(),
                "''",
                "''",
                &format!(
                    "{} + object.metadata.generateName + {}",
                    lit(NO_UID_HEAD),
                    lit(NO_UID_TAIL)
                )
            ),
            uid = cand(
                &SubPathSource::PodName.to_string(),
                "''",
                "''",
                &format!("{} + {}", lit(NO_UID_HEAD), lit(NO_UID_TAIL))
            ),
        ),
    );
    // The webhook's SelectionError::SubPath, its source and its reason
    // standing in for theirs (neither takes a sentinel).
    let (p_raw, p_debug) = sentinel(0);
    let src = SubPathSource::PodName;
    let why = SubPathError::Empty;
    let sub_path_error = SelectionError::SubPath {
        annotation: src,
        path: p_raw,
        why: why.clone(),
    }
    .to_string();
    let sub_path_message = |path: &str, problem: &str| {
        fill(
            &sub_path_error,
            &[
                (src.to_string(), "variables.cand.src".to_owned()),
                (p_debug.clone(), quote_clip(path, "qp")),
                (why.to_string(), problem.to_owned()),
            ],
        )
    };
    var(
        "subErr",
        format!(
            "variables.cand.err != '' ? variables.cand.err : variables.cfg.out == '' ? '' : {check}",
            check = bind(
                "w",
                &cel::sub_path_problem(
                    "variables.cand.path",
                    "variables.cfg.outBase",
                    "variables.cfg.outBaseDebug"
                ),
                &format!(
                    "w != '' ? {first} : variables.cand.final == variables.cand.path ? '' : {second}",
                    first = sub_path_message("variables.cand.path", "w"),
                    second = bind(
                        "w2",
                        &bind(
                            "f",
                            "variables.cand.final",
                            &cel::too_long("f", "variables.cfg.outBase", "variables.cfg.outBaseDebug")
                        ),
                        &format!(
                            "w2 == '' ? '' : {}",
                            sub_path_message("variables.cand.final", "w2")
                        )
                    ),
                )
            ),
        ),
    );
    var(
        "outPath",
        "variables.cfg.outBase + '/' + variables.cand.final".to_owned(),
    );
    var(
        "outPathJson",
        "variables.cfg.outBaseJson + '/' + variables.cand.final.replace('\"', '\\\\\"')".to_owned(),
    );
    var(
        "annotation",
        "'{\"data\":' + variables.cfg.dataJson + ',\"outputs\":' + variables.cfg.outJson + ',\"outputsPath\":' + (variables.cfg.out == '' ? 'null' : '\"' + variables.outPathJson + '\"') + '}'".to_owned(),
    );

    // --- the volume names (SPEC §4) --------------------------------------
    for (i, item) in items.iter().enumerate() {
        let covers = |name_var: &str| {
            format!(
                "[object.spec.volumes.filter(v, v.name == {name_var})].map(f, f.size() == 0 || ({}))[0]",
                cel::covers("f[0]", &item.json, true)
            )
        };
        let rests: Vec<String> = item.rests.iter().map(|r| lit(r)).collect();
        let preferred = lit(&item.preferred);
        var(
            &format!("vn{i}"),
            format!(
                "!has(object.spec.volumes) ? {preferred} : {free_preferred} ? {preferred} : \
                 lists.range(object.spec.volumes.size() + 1).map(n, 'pw--' + string(n + 2) + '-' + [{rests}][string(n + 2).size() - 1]).filter(c, {free_c})[0]",
                free_preferred = bind("c", &preferred, &covers("c")),
                rests = rests.join(", "),
                free_c = covers("c"),
            ),
        );
    }
    let item_names: Vec<String> = (0..items.len())
        .map(|i| format!("variables.vn{i}"))
        .collect();
    var(
        "volNames",
        format!(
            "[[{}]].map(all, variables.cfg.vols == '' ? [''].filter(x, false) : variables.cfg.vols.split(',').map(k, all[int(k)]))[0]",
            item_names.join(", ")
        ),
    );
    let item_objects: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            cel::object(
                &item.json,
                "Object.spec.volumes",
                Some(&format!("variables.vn{i}")),
            )
        })
        .collect();
    // Object initializers exist only in the mutation's expression: the
    // volumes are built there.
    let vols = if items.is_empty() {
        "[]".to_owned()
    } else {
        format!(
            "[[{}]].map(all, variables.cfg.vols == '' ? [] : variables.cfg.vols.split(',').map(k, all[int(k)]))[0]",
            item_objects.join(", ")
        )
    };

    // --- mounts and env of each targeted container ------------------------
    let mut mounts = Vec::new();
    let mut data_mounts = Vec::new();
    let mut env = Vec::new();
    let mut access = Vec::new();
    for (ci, class) in classes.iter().enumerate() {
        let tag = format!("'cls': '{ci}'");
        let mount = |volume: &str, path: &str, sub: &str, ro: bool, what: &str| {
            format!(
                "{{{tag}, 'volume': {volume}, 'path': {path}, 'sub': {sub}, 'ro': '{}', 'what': {}}}",
                if ro { "y" } else { "" },
                lit(what)
            )
        };
        for store in &class.data {
            if let Backend::Volume {
                mount_path,
                read_only,
                ..
            } = store.backend()
            {
                let v = format!("variables.vn{}", item_of_store[store.name()]);
                mounts.push(mount(
                    &v,
                    &lit(mount_path),
                    "''",
                    *read_only,
                    &describe(store),
                ));
                data_mounts.push(format!(
                    "{{{tag}, 'path': {}, 'what': {}}}",
                    lit(mount_path),
                    lit(&describe(store))
                ));
            }
        }
        if let Some(out) = class.outputs {
            if let Backend::Volume { .. } = out.backend() {
                let v = format!("string(variables.vn{})", item_of_store[out.name()]);
                mounts.push(mount(
                    &v,
                    "string(variables.outPath)",
                    "string(variables.cand.final)",
                    false,
                    &describe(out),
                ));
            }
        }
        if let Some(key) = gcs_key(class) {
            let v = format!("string(variables.vn{})", item_of_key[&key]);
            mounts.push(mount(
                &v,
                &lit(GCS_CREDENTIALS_DIR),
                "''",
                true,
                GCS_KEY_DESCRIPTION,
            ));
        }
        for e in class_env(class) {
            env.push(format!(
                "{{{tag}, 'name': {}, 'value': {}, 'secret': {}, 'key': {}, 'group': '{}'}}",
                lit(&e.name),
                e.value,
                lit(&e.secret),
                lit(&e.key),
                sdk_env_group(&e.name)
                    .map(|g| g.to_string())
                    .unwrap_or_default()
            ));
        }
        for (path, entry) in static_access(class) {
            access.push(format!(
                "{{{tag}, 'k': {}, 'j': {}}}",
                lit(&path),
                lit(&entry)
            ));
        }
    }
    let by_class = |list: &[String]| {
        if list.is_empty() {
            "[{'cls': ''}].filter(x, false)".to_owned()
        } else {
            format!(
                "[{}].filter(x, x.cls == string(variables.cls))",
                list.join(", ")
            )
        }
    };
    var("mounts", by_class(&mounts));
    var("dataMounts", by_class(&data_mounts));
    var("access", by_class(&access));
    // polystores' keys (SPEC §4): sorted by path, the outputs one among them.
    var(
        "accessKeys",
        "'{' + (variables.cfg.outAccess == '' ? variables.access.map(e, e.j) : \
         variables.access.filter(e, e.k < variables.outPath).map(e, e.j) + ['\"' + variables.outPathJson + '\":' + variables.cfg.outAccess] + variables.access.filter(e, e.k > variables.outPath).map(e, e.j)).join(',') + '}'"
            .to_owned(),
    );
    var("env", by_class(&env));

    // --- denials ---------------------------------------------------------
    let (first_raw, _) = sentinel(0);
    let (second_raw, _) = sentinel(1);
    let (path_raw, path_debug) = sentinel(2);
    let own_mounts = fill(
        &Conflict::OwnMounts {
            path: path_raw.clone(),
            first: first_raw.clone(),
            second: second_raw.clone(),
        }
        .to_string(),
        &[
            (first_raw.clone(), "l[0].what".to_owned()),
            (second_raw.clone(), "variables.cfg.outWhat".to_owned()),
            (path_debug.clone(), quote_clip("variables.outPath", "op")),
        ],
    );
    let own_mounts_credentials = fill(
        &Conflict::OwnMounts {
            path: path_raw.clone(),
            first: first_raw.clone(),
            second: GCS_KEY_DESCRIPTION.to_owned(),
        }
        .to_string(),
        &[
            (first_raw.clone(), "variables.cfg.outWhat".to_owned()),
            (path_debug.clone(), quote_clip("variables.outPath", "op")),
        ],
    );
    var(
        "ownMounts",
        format!(
            "variables.cfg.outVolume == '' ? variables.cfg.staticDeny : \
             [variables.dataMounts.filter(m, m.path == variables.outPath)].map(l, l.size() > 0 ? {own_mounts} : \
             variables.cfg.staticDeny != '' ? variables.cfg.staticDeny : \
             variables.cfg.credentials != '' && variables.outPath == {dir} ? {own_mounts_credentials} : '')[0]",
            dir = lit(GCS_CREDENTIALS_DIR),
        ),
    );
    var(
        "containerErr",
        format!(
            "[{init} + {main}].map(l, l.size() > 0 ? l[0] : '')[0]",
            init = container_errors("initContainers"),
            main = container_errors("containers"),
        ),
    );
    var(
        "denied",
        "variables.subErr != '' ? variables.subErr : variables.ownMounts != '' ? variables.ownMounts : variables.containerErr".to_owned(),
    );

    // --- the patch -------------------------------------------------------
    let injected_pointer = format!(
        "/metadata/annotations/{}",
        ANNOTATION_INJECTED.replace('~', "~0").replace('/', "~1")
    );
    let denied_pointer = format!(
        "/metadata/annotations/{}",
        POLICY_DENIED_ANNOTATION
            .replace('~', "~0")
            .replace('/', "~1")
    );
    let denial = format!(
        "has(object.metadata.annotations) ? [JSONPatch{{op: 'add', path: {p}, value: variables.denied}}] : \
         [JSONPatch{{op: 'add', path: '/metadata/annotations', value: {{{k}: variables.denied}}}}]",
        p = lit(&denied_pointer),
        k = lit(POLICY_DENIED_ANNOTATION),
    );
    // The denial annotation is the policy's alone: an allowed pod never
    // keeps one, so the validating policy refuses only what this request
    // marked.
    let unmark = format!(
        "({has} ? [JSONPatch{{op: 'remove', path: {p}}}] : [])",
        has = has_annotation(POLICY_DENIED_ANNOTATION),
        p = lit(&denied_pointer),
    );
    let annotation_ops = format!(
        "(has(object.metadata.annotations) ? ({has} && {get} == variables.annotation ? [] : [JSONPatch{{op: 'add', path: {p}, value: variables.annotation}}]) : \
         [JSONPatch{{op: 'add', path: '/metadata/annotations', value: {{{k}: variables.annotation}}}}])",
        has = has_annotation(ANNOTATION_INJECTED),
        get = annotation(ANNOTATION_INJECTED),
        p = lit(&injected_pointer),
        k = lit(ANNOTATION_INJECTED),
    );
    // Each list built once and bound: CEL charges every construction.
    let volume_ops = "[VOLS].map(vs, [lists.range(variables.volNames.size()).filter(k, !(has(object.spec.volumes) && object.spec.volumes.exists(v, v.name == variables.volNames[k]))).map(k, vs[k])]\
        .map(ms, ms.size() == 0 ? [] : (has(object.spec.volumes) ? [] : [JSONPatch{op: 'add', path: '/spec/volumes', value: []}]) + ms.map(v, JSONPatch{op: 'add', path: '/spec/volumes/-', value: v}))[0])[0]";
    let volume_ops = volume_ops.replace("VOLS", &vols);
    let patch = format!(
        "variables.denied != '' ? ({denial}) : {unmark} + {annotation_ops} + {volume_ops} + {init} + {main}",
        init = container_ops("initContainers"),
        main = container_ops("containers"),
    );
    Ok(Program {
        variables: vars,
        patch,
    })
}

/// The GCS key that becomes the class's default credentials (SPEC §4).
fn gcs_key(class: &Class<'_>) -> Option<(String, String)> {
    let sel = selection_of(class);
    let store = default_store(&sel, Provider::Gcs)?;
    match store.backend() {
        Backend::Cloud {
            credentials: Some(c),
            ..
        } => Some((c.secret.clone(), c.secret_key.clone())),
        _ => None,
    }
}

/// The class as a selection (sub-path aside), for the core's rules that
/// read one.
fn selection_of<'c>(class: &Class<'c>) -> selection::Selection<'c> {
    selection::Selection {
        data: class.data.clone(),
        data_by_default: true,
        outputs: class.outputs.map(|store| selection::Outputs {
            store,
            sub_path: String::new(),
            path: String::new(),
            choice: selection::OutputsChoice::FirstAvailable,
            rule: SubPathSource::PodName,
            derived: None,
        }),
        containers: None,
    }
}

/// The class's fixed facts, as a CEL map of strings.
fn class_map(
    class: &Class<'_>,
    item_of_store: &HashMap<&str, usize>,
    item_of_key: &BTreeMap<(String, String), usize>,
) -> String {
    let mut m: BTreeMap<&str, String> = BTreeMap::new();
    let data_names: Vec<&str> = class.data.iter().map(|s| s.name()).collect();
    m.insert("dataJson", to_json(&data_names));
    let out = class.outputs;
    m.insert("out", out.map(|s| s.name().to_owned()).unwrap_or_default());
    m.insert(
        "outJson",
        out.map(|s| to_json(&s.name())).unwrap_or("null".into()),
    );
    let base = out.map(|s| s.path().trim_end_matches('/')).unwrap_or("");
    m.insert("outBase", base.to_owned());
    m.insert("outBaseJson", json_inner(base));
    m.insert("outBaseDebug", format!("{:?}", clip(base)));
    m.insert(
        "outIso",
        if out.is_some_and(Store::isolates_namespaces) {
            "y".into()
        } else {
            String::new()
        },
    );
    m.insert(
        "outVolume",
        if out.is_some_and(|s| matches!(s.backend(), Backend::Volume { .. })) {
            "y".into()
        } else {
            String::new()
        },
    );
    m.insert("outWhat", out.map(describe).unwrap_or_default());
    m.insert(
        "outAccess",
        match out.map(Store::backend) {
            Some(Backend::Cloud {
                provider,
                credentials: Some(c),
                ..
            }) => access_entry(*provider, &c.secret_key),
            _ => String::new(),
        },
    );
    let credentials = gcs_key(class);
    m.insert(
        "credentials",
        if credentials.is_some() {
            "y".into()
        } else {
            String::new()
        },
    );
    // Two of the class's own mounts at one path whatever the pod: a data
    // store at the GCS key's directory.
    let static_deny = credentials
        .as_ref()
        .and_then(|_| {
            class.data.iter().find(|s| {
                matches!(s.backend(), Backend::Volume { mount_path, .. } if mount_path == GCS_CREDENTIALS_DIR)
            })
        })
        .map(|s| {
            Conflict::OwnMounts {
                path: clip(GCS_CREDENTIALS_DIR),
                first: describe(s),
                second: GCS_KEY_DESCRIPTION.to_owned(),
            }
            .to_string()
        })
        .unwrap_or_default();
    m.insert("staticDeny", static_deny);
    let mut vols: Vec<String> = Vec::new();
    for store in class.data.iter().chain(out.iter()) {
        if let Some(i) = item_of_store.get(store.name()) {
            vols.push(i.to_string());
        }
    }
    if let Some(key) = credentials {
        vols.push(item_of_key[&key].to_string());
    }
    m.insert("vols", vols.join(","));
    let mut data_paths = BTreeMap::new();
    for s in &class.data {
        data_paths.insert(s.name(), s.path());
    }
    m.insert("dataPaths", to_json(&data_paths));
    let entries: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{}: {}", lit(k), lit(v)))
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// One store's entry in polystores' keys, its fields in the webhook's
/// order (`store`, then `secret_key`).
fn access_entry(provider: Provider, secret_key: &str) -> String {
    format!(
        "{{\"store\":{},\"secret_key\":{}}}",
        to_json(&provider.as_str()),
        to_json(&secret_key)
    )
}

/// polystores' keys the config fixes: every keyed data bucket (the
/// outputs one is added per pod, by its full path), as (path, JSON entry).
fn static_access(class: &Class<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for store in &class.data {
        if let Backend::Cloud {
            provider,
            credentials: Some(c),
            ..
        } = store.backend()
        {
            out.insert(
                store.path().to_owned(),
                format!(
                    "{}:{}",
                    to_json(&store.path()),
                    access_entry(*provider, &c.secret_key)
                ),
            );
        }
    }
    out
}

/// The env vars of the class in the webhook's order: the data paths, the
/// outputs path, polystores' keys, one per secret key, then each
/// provider's SDK variables (SPEC §4, §7).
fn class_env(class: &Class<'_>) -> Vec<EnvEntry> {
    let plain = |name: &str, value: String| EnvEntry {
        name: name.to_owned(),
        value,
        secret: String::new(),
        key: String::new(),
    };
    let secret_ref = |name: &str, secret: &str, key: &str| EnvEntry {
        name: name.to_owned(),
        value: "''".to_owned(),
        secret: secret.to_owned(),
        key: key.to_owned(),
    };
    let mut env = vec![plain(
        ENV_DATA_PATHS,
        "string(variables.cfg.dataPaths)".to_owned(),
    )];
    if class.outputs.is_some() {
        env.push(plain(
            ENV_OUTPUTS_PATH,
            "string(variables.outPath)".to_owned(),
        ));
    }
    let mut secret_keys: BTreeMap<&str, &str> = BTreeMap::new();
    for store in class.data.iter().chain(class.outputs.iter()) {
        if let Backend::Cloud {
            credentials: Some(c),
            ..
        } = store.backend()
        {
            secret_keys.insert(&c.secret_key, &c.secret);
        }
    }
    if !secret_keys.is_empty() {
        env.push(plain(
            ENV_ACCESS_KEYS,
            "string(variables.accessKeys)".to_owned(),
        ));
    }
    for (key, secret) in &secret_keys {
        env.push(secret_ref(key, secret, key));
    }
    // The SDK variables each provider's default store wrote at load, as
    // the webhook adds them.
    let sel = selection_of(class);
    for provider in [Provider::Gcs, Provider::S3, Provider::Azure] {
        let Some(store) = default_store(&sel, provider) else {
            continue;
        };
        for e in &store.fragments().sdk_env {
            env.push(match &e.value {
                EnvSource::Plain(value) => plain(e.name, lit(value)),
                EnvSource::Secret { secret, key } => secret_ref(e.name, secret, key),
            });
        }
    }
    env
}

/// No two volume items can ever be given the same name, whatever the pod
/// holds: the webhook would then skip a name it gave earlier in the same
/// review, which the policy (naming each volume on its own) cannot do.
fn check_names_apart(items: &[VolumeItem]) -> Result<(), PolicyError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let mut keys = vec![item.preferred.as_str()];
        keys.extend(item.rests.iter().map(String::as_str));
        for key in keys {
            if let Some(&j) = seen.get(key) {
                if items[j].credentials && item.credentials {
                    continue;
                }
                return Err(PolicyError::VolumeNames {
                    first: items[j].what.clone(),
                    second: item.what.clone(),
                });
            }
        }
        seen.insert(&item.preferred, i);
        for r in &item.rests {
            seen.entry(r).or_insert(i);
        }
    }
    Ok(())
}

/// Each container's first conflict in list `list`, in the webhook's
/// order: its mounts, then its env (SPEC §5).
fn container_errors(list: &str) -> String {
    let q = |e: &str, v: &str| quote_clip(e, v);
    let (c_raw, c_debug) = sentinel(0);
    let (p_raw, p_debug) = sentinel(1);
    let (v_raw, v_debug) = sentinel(2);
    let (w_raw, _) = sentinel(3);
    let (x_raw, _) = sentinel(4);
    let (y_raw, _) = sentinel(5);
    let mount_path = fill(
        &Conflict::MountPath {
            field: String::new(),
            container: c_raw.clone(),
            path: p_raw,
            existing: v_raw.clone(),
            what: w_raw.clone(),
        }
        .to_string(),
        &[
            (c_debug.clone(), q("c.name", "qc")),
            (p_debug, q("mp[0].path", "qm")),
            (v_debug.clone(), q("h.name", "qh")),
            (w_raw.clone(), "mp[0].what".to_owned()),
        ],
    );
    let foreign = fill(
        &Conflict::ForeignMount {
            field: String::new(),
            container: c_raw.clone(),
            mount: x_raw.clone(),
            volume: v_raw.clone(),
            what: w_raw.clone(),
            why: y_raw.clone(),
        }
        .to_string(),
        &[
            (c_debug.clone(), q("c.name", "qc")),
            (v_debug.clone(), q("h.name", "qh")),
            (w_raw.clone(), "m.what".to_owned()),
            (
                x_raw,
                format!(
                    "{} + (has(h.subPath) ? ' with subPath ' + {} : '') + (m.ro != '' && !(has(h.readOnly) && h.readOnly) ? ' read-write' : '')",
                    q("h.mountPath", "qh"),
                    q("h.subPath", "qs")
                ),
            ),
            (
                y_raw,
                format!(
                    "'only the webhook mounts it, at ' + {} + (m.sub != '' ? ' with subPath ' + {} : '') + (m.ro != '' ? ' read-only' : '')",
                    q("m.path", "qm"),
                    q("m.sub", "qs")
                ),
            ),
        ],
    );
    let env_conflict = fill(
        &Conflict::Env {
            field: String::new(),
            container: c_raw.clone(),
            name: v_raw.clone(),
            ours: w_raw.clone(),
        }
        .to_string(),
        &[
            (c_debug, q("c.name", "qc")),
            (v_raw, "e.name".to_owned()),
            (
                w_raw,
                format!(
                    "e.secret == '' ? {} : 'key ' + strings.quote(e.key) + ' of secret ' + strings.quote(e.secret)",
                    q("e.value", "qv")
                ),
            ),
        ],
    );
    let exact = "p == m.path && (has(h.subPath) ? h.subPath : '') == m.sub && (has(h.readOnly) && h.readOnly) == (m.ro != '')";
    let mount_error = format!(
        "[variables.mounts.filter(m, m.volume == h.name)].map(ms, ms.size() > 0 ? {ours} : {other})[0]",
        ours = bind(
            "m",
            "ms[0]",
            &bind(
                "p",
                &cel::clean("h.mountPath", "cp"),
                &format!("{exact} ? '' : {foreign}")
            )
        ),
        other = bind(
            "p",
            &cel::clean("h.mountPath", "cp"),
            &format!(
                "[variables.mounts.filter(m, m.path == p)].map(mp, mp.size() > 0 ? {mount_path} : '')[0]"
            )
        ),
    );
    let same = "e.secret == '' ? (has(h.value) && h.value == e.value && !has(h.valueFrom)) : \
        ((!has(h.value) || h.value == '') && has(h.valueFrom) && has(h.valueFrom.secretKeyRef) && has(h.valueFrom.secretKeyRef.key) && h.valueFrom.secretKeyRef.key == e.key && has(h.valueFrom.secretKeyRef.name) && h.valueFrom.secretKeyRef.name == e.secret)";
    let env_error = format!(
        "[variables.env.filter(e, e.name == h.name && e.group == '')].map(es, es.size() == 0 ? '' : {})[0]",
        bind("e", "es[0]", &format!("({same}) ? '' : {env_conflict}"))
    );
    let per_container = format!(
        "[has(c.volumeMounts) ? c.volumeMounts.map(h, {mount_error}).filter(x, x != '') : []].map(me, me.size() > 0 ? me[0] : \
         has(c.env) ? [c.env.map(h, {env_error}).filter(x, x != '')].map(ee, ee.size() > 0 ? ee[0] : '')[0] : '')[0]"
    );
    format!("(has(object.spec.{list}) ? object.spec.{list}.map(c, {per_container}).filter(x, x != '') : [])")
}

/// Each SDK variable's group (SPEC §7), as a CEL map.
fn sdk_groups() -> String {
    let groups: Vec<String> = SDK_ENV_GROUPS
        .iter()
        .enumerate()
        .flat_map(|(g, names)| names.iter().map(move |n| format!("{}: '{g}'", lit(n))))
        .collect();
    format!("{{{}}}", groups.join(", "))
}

/// The operations adding one list's containers' missing mounts and env
/// vars, container by container (SPEC §4, §7: a container that sets one of
/// an SDK group's variables keeps the whole group).
fn container_ops(list: &str) -> String {
    let group_of = "variables.groups";
    let mount_value = "m.sub != '' ? Object.spec.containers.volumeMounts{name: m.volume, mountPath: m.path, subPath: m.sub} : \
        m.ro != '' ? Object.spec.containers.volumeMounts{name: m.volume, mountPath: m.path, readOnly: true} : \
        Object.spec.containers.volumeMounts{name: m.volume, mountPath: m.path}";
    let env_value = "e.secret == '' ? Object.spec.containers.env{name: e.name, value: e.value} : \
        Object.spec.containers.env{name: e.name, valueFrom: Object.spec.containers.env.valueFrom{secretKeyRef: Object.spec.containers.env.valueFrom.secretKeyRef{name: e.secret, key: e.key}}}";
    let base = format!("'/spec/{list}/' + string(i)");
    let append = |field: &str, items: &str, present: &str| {
        format!(
            "[{items}].map(xs, xs.size() == 0 ? [] : ({present} ? [] : [JSONPatch{{op: 'add', path: {base} + '/{field}', value: []}}]) + xs.map(x, JSONPatch{{op: 'add', path: {base} + '/{field}/-', value: x}}))[0]"
        )
    };
    let mounts = append(
        "volumeMounts",
        &format!(
            "variables.mounts.filter(m, !(has(c.volumeMounts) && c.volumeMounts.exists(h, h.name == m.volume))).map(m, {mount_value})"
        ),
        "has(c.volumeMounts)",
    );
    let env = append(
        "env",
        &format!(
            "variables.env.filter(e, !(e.group != '' && has(c.env) && c.env.exists(h, h.name in {group_of} && {group_of}[h.name] == e.group)) && !(has(c.env) && c.env.exists(h, h.name == e.name))).map(e, {env_value})"
        ),
        "has(c.env)",
    );
    format!(
        "(has(object.spec.{list}) ? lists.range(object.spec.{list}.size()).map(i, {body}).flatten() : [])",
        body = bind("c", &format!("object.spec.{list}[i]"), &format!("{mounts} + {env}"))
    )
}
