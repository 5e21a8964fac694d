//! Reading one file an operator's flag points at (config, certificate, key)
//! the way a reload loop can afford to: only a regular file, at most a fixed
//! number of bytes, and never waiting for a writer. A FIFO blocks `open` and
//! `read` until something writes to it; `/dev/zero` never ends; a directory
//! or a socket has no content. Each is refused, saying what the path is.
//!
//! Symlinks are followed (Secret and ConfigMap volumes are made of them): what
//! counts is what the path finally names. This module must not allocate by
//! the size a file claims, nor read past the limit it is given.

use std::fs::{FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The most a certificate or key file may hold (a chain of a few
/// certificates is a few KiB).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// It could not be opened, inspected or read.
    #[error("cannot read it: {0}")]
    Io(String),
    /// It is something other than a regular file (named by kind).
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    /// It holds more than the limit.
    #[error("it is larger than the limit of {} for this file; refused without reading the rest", size(*.limit))]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

fn io(e: std::io::Error) -> FileError {
    FileError::Io(e.to_string())
}

/// Reads the regular file at `path` (symlinks followed), at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    // Looked at before opening: opening a device can have effects of its
    // own, and opening a socket fails with an unhelpful "no such device".
    let named = std::fs::metadata(path).map_err(io)?;
    regular(named.file_type())?;
    // O_NONBLOCK: should the path be swapped for a FIFO after the check
    // above, `open` returns at once instead of waiting for a writer (regular
    // files ignore the flag). O_NOCTTY: a terminal never becomes ours.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    // What was opened is what counts: checked again on the handle itself.
    let opened = file.metadata().map_err(io)?;
    regular(opened.file_type())?;
    // One byte past the limit tells "too large" from "exactly the limit"
    // without trusting the size the file reports (procfs says 0, a file
    // may grow while read).
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    // The buffer grew by doubling and is kept until the next version: hold
    // the content, not up to twice its size.
    bytes.shrink_to_fit();
    Ok(bytes)
}

fn regular(kind: FileType) -> Result<(), FileError> {
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "of an unknown kind"
    };
    Err(FileError::NotRegular(what))
}

/// `limit` bytes for people: whole MiB or KiB when it is one.
fn size(limit: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    if limit >= MIB && limit.is_multiple_of(MIB) {
        format!("{} MiB", limit / MIB)
    } else if limit >= KIB && limit.is_multiple_of(KIB) {
        format!("{} KiB", limit / KIB)
    } else {
        format!("{limit} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_and_symlinks_to_them_up_to_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert_eq!(
            read(&file, 5).as_deref(),
            Ok(&b"12345"[..]),
            "exactly the limit"
        );
        assert_eq!(
            read(&link, 5).as_deref(),
            Ok(&b"12345"[..]),
            "through a symlink"
        );
        assert_eq!(read(&file, 4), Err(FileError::TooLarge { limit: 4 }));
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_saying_what_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("socket");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let cases = [
            (
                dir.path().to_owned(),
                "it is a directory, not a regular file",
            ),
            (zero, "it is a character device, not a regular file"),
            (socket, "it is a socket, not a regular file"),
            (fifo, "it is a FIFO (named pipe), not a regular file"),
            (dir.path().join("missing"), "cannot read it: No such file"),
        ];
        for (path, want) in cases {
            let err = read(&path, 1024).expect_err(want).to_string();
            assert!(err.starts_with(want), "{}: {err}", path.display());
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        let cases = [
            (16 * 1024 * 1024, "16 MiB"),
            (1024 * 1024, "1 MiB"),
            (64 * 1024, "64 KiB"),
            (1000, "1000 bytes"),
            (1536 * 1024, "1536 KiB"),
        ];
        for (limit, want) in cases {
            assert_eq!(size(limit), want, "{limit}");
        }
    }
}
