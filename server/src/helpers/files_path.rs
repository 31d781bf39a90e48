//! What every part of a file transfer shares: where paths are resolved
//! (beneath the files root, by the kernel), names, and the error a
//! transfer ends with. files.rs, files_tree.rs and files_request.rs all use
//! it; it uses none of them.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};

/// Why a transfer failed; the helper prints it for the client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    #[error("{}: {source}", shown(path))]
    Path { path: OsString, source: io::Error },
    #[error("{}: not a file name", shown(.0))]
    NotAName(OsString),
    #[error("{}: not a directory name", shown(.0))]
    NotADirName(OsString),
    #[error("{}: not a regular file", shown(.0))]
    NotAFile(OsString),
    #[error("{}: changed while being read", shown(.0))]
    Changed(OsString),
    #[error("the copy sent more than its {0} bytes")]
    TooMuch(u64),
    #[error("the copy ended after {got} of {size} bytes")]
    Short { got: u64, size: u64 },
    #[error("the copy ended before its checksum")]
    NoChecksum,
    #[error("checksum mismatch: the data was damaged on the way; nothing was written")]
    Checksum,
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("from rexecd: {0}")]
    Request(String),
}

/// The error for a failed operation on `path`.
pub(crate) fn at<E: Into<io::Error>>(path: &OsStr) -> impl Fn(E) -> TransferError + '_ {
    move |e| TransferError::Path {
        path: path.to_os_string(),
        source: e.into(),
    }
}

/// A directory for a message: `.` for the empty path.
pub(crate) fn shown_dir(dir: &OsStr) -> &OsStr {
    if dir.is_empty() { OsStr::new(".") } else { dir }
}

/// A path (bytes, any name) made safe for a message.
pub(crate) fn shown(p: &OsStr) -> String {
    rexec_proto::text::echo(&p.to_string_lossy())
}

/// Where paths are resolved: beneath a files root (by the kernel), or as
/// they are when there is none.
pub(crate) struct Root(Option<OwnedFd>);

impl Root {
    /// The files root, if there is one.
    pub(crate) fn new(root: Option<&OsStr>) -> Result<Root, TransferError> {
        let Some(root) = root else {
            return Ok(Root(None));
        };
        rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(|fd| Root(Some(fd)))
        .map_err(|e| TransferError::Io {
            what: format!("files root {}", shown(root)),
            source: e.into(),
        })
    }

    /// Opens `path`; beneath a root no `..` or symlink leads out, and an
    /// absolute path means one inside it.
    pub(crate) fn open(&self, path: &OsStr, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let bytes = path.as_bytes();
        let (dir, resolve, bytes): (BorrowedFd<'_>, _, _) = match &self.0 {
            Some(fd) => {
                let start = bytes.iter().position(|&b| b != b'/').unwrap_or(bytes.len());
                (
                    fd.as_fd(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                    &bytes[start..],
                )
            }
            None => (CWD, ResolveFlags::empty(), bytes),
        };
        let path = OsStr::from_bytes(if bytes.is_empty() { b"." } else { bytes });
        rustix::fs::openat2(dir, path, flags | OFlags::CLOEXEC, mode, resolve).map_err(|e| {
            // What RESOLVE_BENEATH says for `..` or a symlink that leads out.
            if e == rustix::io::Errno::XDEV {
                io::Error::new(io::ErrorKind::PermissionDenied, "outside the files root")
            } else {
                e.into()
            }
        })
    }

    /// Opens the directory `path`.
    pub(crate) fn dir(&self, path: &OsStr) -> io::Result<OwnedFd> {
        self.open(path, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
    }
}

/// A name that is one plain component: no slash, not `.` or `..`.
pub(crate) fn plain_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && !b.contains(&b'/') && b != b"." && b != b".."
}

/// `.NAME.rexec-PID`: the temporary name beside NAME.
pub(crate) fn temp_name(name: &OsStr) -> OsString {
    let mut t = OsString::from(".");
    t.push(name);
    t.push(format!(".rexec-{}", std::process::id()));
    t
}

/// Sets the access and modification times of `fd` to `secs` (`cp -p`
/// keeps whole seconds).
pub(crate) fn set_mtime(fd: &impl std::os::fd::AsFd, secs: i64) -> Result<(), TransferError> {
    let at = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let t = rustix::fs::Timestamps {
        last_access: at,
        last_modification: at,
    };
    rustix::fs::futimens(fd, &t).map_err(|e| TransferError::Io {
        what: "mtime".into(),
        source: e.into(),
    })
}
