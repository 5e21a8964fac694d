//! Kubernetes and filesystem name rules the config and the selection check,
//! and the deterministic names the webhook gives the things it adds.

use crate::vocabulary::VOLUME_PREFIX;

/// A DNS-1123 label: lowercase alphanumerics and `-`, alphanumeric at both
/// ends, at most 63 characters (namespaces, store names, volume names).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters
/// (Secret and PersistentVolumeClaim names).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A name Kubernetes accepts for a container env var.
pub fn is_env_name(s: &str) -> bool {
    // As Kubernetes' IsEnvVarName: also never ".", "..", or "..name".
    if s == "." || s.starts_with("..") {
        return false;
    }
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(c) if c.is_ascii_digit() => false,
        Some(_) => s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')),
        None => false,
    }
}

/// A key Kubernetes accepts in a Secret's data: letters, digits, `-`, `_`
/// and `.`, at most 253 bytes, never `.` or `..`.
pub fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Checks a store's `endpoint`: `http(s)://host[:port]` with no user info,
/// path, query or fragment; one trailing `/` is dropped. The error
/// completes "`<endpoint>` ...".
pub fn check_endpoint(endpoint: &str) -> Result<&str, &'static str> {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Err("is not a URL: expected http://host[:port] or https://host[:port]");
    };
    if scheme != "http" && scheme != "https" {
        return Err("must use http or https (e.g. http://minio.storage:9000)");
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains(['/', '?', '#']) {
        return Err("must have no path, query or fragment: give only http(s)://host[:port]; the clients add the bucket themselves");
    }
    if authority.contains('@') {
        return Err("must not hold credentials: put them in the store's Secret");
    }
    if authority
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("must not contain spaces or control characters");
    }
    // host, host:port, [v6] or [v6]:port
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err("has an unclosed '[' in its host");
        };
        match after {
            "" => (address, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => return Err("has text after its IPv6 address that is not a port"),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("has an IPv6 address without brackets: write http://[::1]:9000")
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p != 0) {
            return Err("has a port that is not a number from 1 to 65535");
        }
    }
    let end = endpoint.len() - (rest.len() - authority.len());
    Ok(&endpoint[..end])
}

/// Checks an absolute mount path and drops one trailing `/`, so that `/d`
/// and `/d/` are the same path. The error completes "`<path>` ...".
pub fn normalise_mount_path(path: &str) -> Result<String, &'static str> {
    let trimmed = match path.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => path,
    };
    if !trimmed.starts_with('/') {
        return Err("must be an absolute path");
    }
    if trimmed == "/" {
        return Err("cannot be the root directory");
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    for segment in trimmed[1..].split('/') {
        match segment {
            "" => return Err("must not contain empty segments ('//')"),
            "." | ".." => return Err("must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(trimmed.to_owned())
}

/// The pod volume name for a store: `pw-<store>`, or, when that would pass
/// the 63-character limit, a truncated name with a hash of the whole one.
pub fn volume_name(store: &str) -> String {
    let full = format!("{VOLUME_PREFIX}{store}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: tiny, stable across releases and platforms (unlike std's hasher).
    let hash = store.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    // Store names are ASCII once validated; cut on a char boundary anyway,
    // so that no input can make this panic.
    let mut cut = 54;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = full[..cut].trim_end_matches('-');
    format!("{head}-{hash:08x}")
}

/// The `n`th alternate (n >= 2) of a webhook volume name, for a pod that
/// already owns the preferred name with other content: `pw--<n>-<rest>`.
/// The double hyphen keeps it apart from every store's preferred name
/// (`pw-<DNS label>`, and a label never starts with `-`); it stays a DNS
/// label of at most 63 characters.
pub fn alternate_volume_name(preferred: &str, n: u32) -> String {
    let rest = preferred
        .strip_prefix(VOLUME_PREFIX)
        .unwrap_or(preferred)
        .trim_start_matches('-');
    let head = format!("{VOLUME_PREFIX}-{n}-");
    let room = 63usize.saturating_sub(head.len());
    let mut cut = rest.len().min(room);
    while !rest.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{head}{}", rest[..cut].trim_end_matches('-'))
}

/// A mount path as the container runtime resolves it: relative to the
/// container's root (runc takes `scratch` as `/scratch`), then Go's
/// `filepath.Clean`: repeated `/` collapsed, `.` dropped, `..` applied, no
/// trailing `/`. Borrowed when already clean, which is the common case.
pub fn clean_path(path: &str) -> std::borrow::Cow<'_, str> {
    let dirty = !path.starts_with('/')
        || path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
        || (path.len() > 1 && path.ends_with('/'));
    if !dirty {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    std::borrow::Cow::Owned(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::GCS_CREDENTIALS_VOLUME;

    #[test]
    fn labels_and_subdomains() {
        for good in ["a", "data-1", "0abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        assert!(is_dns1123_subdomain("my.secret-1"));
        assert!(!is_dns1123_subdomain("my..secret"));
        assert!(!is_dns1123_subdomain("My"));
    }

    #[test]
    fn env_names() {
        for good in ["gcs-key.json", "_X", "A1", "a.b-c_d"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "1a", "a b", "a=b", "é", ".", "..", "..key"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn mount_paths() {
        assert_eq!(normalise_mount_path("/data/1/"), Ok("/data/1".into()));
        assert_eq!(normalise_mount_path("/data"), Ok("/data".into()));
        for bad in ["", "/", "//", "data", "/a//b", "/a/./b", "/a/..", "/a\nb"] {
            assert!(normalise_mount_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clean_paths() {
        for (dirty, clean) in [
            ("/scratch", "/scratch"),
            ("/scratch/", "/scratch"),
            ("/scratch//", "/scratch"),
            ("//scratch/./a/", "/scratch/a"),
            ("/a/b/../c", "/a/c"),
            ("/a/..", "/"),
            ("/", "/"),
            // Found by the structured fuzz target: a pod's own mount at
            // `scratch` is the runtime's `/scratch`, where a store mounts.
            ("scratch", "/scratch"),
            ("a/./b/", "/a/b"),
            ("../scratch", "/scratch"),
        ] {
            assert_eq!(clean_path(dirty), clean, "{dirty}");
        }
    }

    #[test]
    fn volume_names_never_split_a_character() {
        // Regression (fuzz: config_yaml-non-ascii-long-store-name).
        let name = volume_name(&format!("a{}", "€".repeat(20)));
        assert!(name.len() <= 63, "{name}");
    }

    #[test]
    fn volume_names_fit_and_differ() {
        assert_eq!(volume_name("data1"), "pw-data1");
        let a = volume_name(&format!("{}a", "x".repeat(62)));
        let b = volume_name(&format!("{}b", "x".repeat(62)));
        assert!(a.len() <= 63 && is_dns1123_label(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(volume_name(&"x".repeat(60)).len(), 63);
        assert!(!is_dns1123_label(
            GCS_CREDENTIALS_VOLUME.trim_start_matches(VOLUME_PREFIX)
        ));
    }
}
