//! Writing the certificate files so that a reader never sees a key that does
//! not belong to the certificate beside it: every file of one issue goes
//! into a new directory, and one rename of a symlink (`..data`) makes them
//! current together, as the kubelet does for Secret volumes. Each name in
//! the output directory (`tls.crt`, `tls.key`, ...) is a symlink through
//! `..data`, so what it names changes only when `..data` does.
//!
//! ```text
//! out/
//!   ..2026_12_06_20_31_05.123456789/   ca.crt ca.key tls.crt tls.key ca-bundle.b64 webhook-ca-bundle.yaml
//!   ..data -> ..2026_12_06_20_31_05.123456789
//!   tls.crt -> ..data/tls.crt          (and one such link per file)
//! ```
//!
//! An output directory written by an older version holds regular files;
//! the first write in this layout replaces each with its link in turn, so
//! only that one write has the old window between two files.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{symlink, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// The link that names the current version's directory.
const DATA: &str = "..data";

/// Writes `files` (name, content, mode) into a new version directory under
/// `out`, makes it current with one rename, and removes older versions.
/// Returns the paths of the names in `out`.
pub(super) fn publish(out: &Path, files: &[(&str, &str, u32)]) -> io::Result<Vec<PathBuf>> {
    let version = new_version_dir(out)?;
    for &(name, content, mode) in files {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(version.join(name))?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    fs::File::open(&version)?.sync_all()?;
    let version_name = version
        .file_name()
        .ok_or_else(|| io::Error::other("the version directory has no name"))?;
    // The one switch: `..data` is replaced by a rename, which is atomic.
    replace_with_link(&out.join(DATA), Path::new(version_name))?;
    for &(name, _, _) in files {
        let link = Path::new(DATA).join(name);
        let path = out.join(name);
        if fs::read_link(&path).ok().as_deref() != Some(link.as_path()) {
            replace_with_link(&path, &link)?;
        }
    }
    fs::File::open(out)?.sync_all()?;
    remove_old_versions(out, version_name)?;
    Ok(files.iter().map(|(name, _, _)| out.join(name)).collect())
}

/// A new, empty `..<UTC time>` directory in `out` (a counter added should
/// two writes fall in the same nanosecond).
fn new_version_dir(out: &Path) -> io::Result<PathBuf> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond()
    );
    for n in 0..100u32 {
        let dir = if n == 0 {
            out.join(&stamp)
        } else {
            out.join(format!("{stamp}-{n}"))
        };
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "cannot create a new version directory {stamp} in it"
    )))
}

/// Replaces whatever `path` is with a symlink to `target`, by a rename.
fn replace_with_link(path: &Path, target: &Path) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp-link");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp)?;
    fs::rename(&tmp, path)
}

/// Removes every `..<time>` version directory but `keep`.
fn remove_old_versions(out: &Path, keep: &std::ffi::OsStr) -> io::Result<()> {
    for entry in fs::read_dir(out)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_version = name.to_str().is_some_and(|n| {
            n.starts_with("..") && n != DATA && n.as_bytes().get(2).is_some_and(u8::is_ascii_digit)
        });
        if is_version && name != keep && entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).expect("readable")
    }

    #[test]
    fn each_name_is_a_link_through_data_and_old_versions_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path();
        publish(out, &[("tls.crt", "one", 0o644), ("tls.key", "k1", 0o600)]).expect("first");
        publish(out, &[("tls.crt", "two", 0o644), ("tls.key", "k2", 0o600)]).expect("second");
        assert_eq!(read(&out.join("tls.crt")), "two");
        assert_eq!(read(&out.join("tls.key")), "k2");
        assert_eq!(
            fs::read_link(out.join("tls.key")).expect("a link"),
            Path::new("..data/tls.key")
        );
        let versions: Vec<String> = fs::read_dir(out)
            .expect("listable")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect();
        assert_eq!(versions.len(), 1, "only the current version: {versions:?}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(out.join("tls.key"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key stays private");
    }

    #[test]
    fn regular_files_of_an_older_layout_are_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path();
        fs::write(out.join("tls.crt"), "old").expect("write");
        fs::write(out.join("tls.key"), "old-key").expect("write");
        publish(
            out,
            &[("tls.crt", "new", 0o644), ("tls.key", "new-key", 0o600)],
        )
        .expect("publish");
        assert_eq!(read(&out.join("tls.crt")), "new");
        assert_eq!(read(&out.join("tls.key")), "new-key");
        assert!(fs::symlink_metadata(out.join("tls.crt"))
            .expect("stat")
            .file_type()
            .is_symlink());
    }
}
