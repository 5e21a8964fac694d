//! Namespace classes: every namespace the config names gets the stores the
//! webhook would give it (SPEC §2's `namespaces`, §3's `defaultOutputs`),
//! and namespaces that get the same stores share a class. Class 0 is every
//! namespace the config does not name.

use std::collections::{BTreeSet, HashMap};

use crate::config::{Config, Role, Store};

/// One set of stores, and the namespaces that get it.
pub(super) struct Class<'c> {
    /// The namespaces of this class; empty for class 0 (all the others).
    pub(super) namespaces: Vec<String>,
    /// The data stores an unannotated pod gets, in name order.
    pub(super) data: Vec<&'c Store>,
    /// The outputs store it gets.
    pub(super) outputs: Option<&'c Store>,
}

/// The classes, class 0 first; each other class has at least one namespace.
pub(super) fn classes(config: &Config) -> Vec<Class<'_>> {
    let named: BTreeSet<&str> = [Role::Data, Role::Outputs]
        .into_iter()
        .flat_map(|role| config.stores(role).values())
        .filter_map(Store::namespaces)
        .flatten()
        .map(String::as_str)
        .collect();
    // "" is no namespace's name: what a namespace the config does not name gets.
    let mut out = vec![class_of(config, "")];
    let mut index: HashMap<Key, usize> = HashMap::new();
    index.insert(key(&out[0]), 0);
    for ns in named {
        let class = class_of(config, ns);
        match index.get(&key(&class)) {
            // What every other namespace gets: class 0 covers it.
            Some(0) => {}
            Some(&i) => out[i].namespaces.push(ns.to_owned()),
            None => {
                index.insert(key(&class), out.len());
                out.push(Class {
                    namespaces: vec![ns.to_owned()],
                    ..class
                });
            }
        }
    }
    out
}

fn class_of<'c>(config: &'c Config, namespace: &str) -> Class<'c> {
    Class {
        namespaces: Vec::new(),
        data: config.available(Role::Data, namespace).collect(),
        outputs: config.default_outputs(namespace),
    }
}

/// What makes two classes the same: their data stores and outputs store.
type Key = (Vec<String>, Option<String>);

fn key(c: &Class<'_>) -> Key {
    (
        c.data.iter().map(|s| s.name().to_owned()).collect(),
        c.outputs.map(|s| s.name().to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_with_the_same_stores_share_a_class() {
        let config = Config::from_yaml(
            "data:\n  d1: {mountPath: /d/1}\n  d2: {mountPath: /d/2, namespaces: [a, b]}\n  d3: {mountPath: /d/3, namespaces: [c]}\n\
             outputs:\n  o1: {mountPath: /o/1}\n  o2: {mountPath: /o/2, namespaces: [c, e]}\n",
        )
        .expect("valid config");
        let got: Vec<(Vec<String>, Vec<&str>, Option<&str>)> = classes(&config)
            .iter()
            .map(|c| {
                (
                    c.namespaces.clone(),
                    c.data.iter().map(|s| s.name()).collect(),
                    c.outputs.map(Store::name),
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (vec![], vec!["d1"], Some("o1")),
                (s(&["a", "b"]), vec!["d1", "d2"], Some("o1")),
                (s(&["c"]), vec!["d1", "d3"], Some("o1")),
                // e gets o2 too, but o1 comes first by name.
            ],
            "e gets what class 0 gets, so it is not named"
        );
    }
}
