//! A server's scan of a tree (`Tree` with `TreeOp::Scan`, protocol 9),
//! parsed as the untrusted bytes it is: every length is checked, every
//! name must be a plain path below the top, and a broken scan is an error,
//! never a panic.

use std::collections::BTreeMap;

use super::*;

/// What the server has at one path below the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Remote {
    File {
        size: u64,
        mtime: i64,
        mode: u32,
        /// With `--checksum`: the digest of its bytes.
        digest: Option<[u8; DIGEST_LEN]>,
    },
    Dir {
        mode: u32,
        mtime: i64,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// A device, socket or pipe: never replaced without `--delete`.
    Other,
}

/// The scan: the top's own entry (`None`: nothing there), and every entry
/// below it by its path relative to the top.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub top: Option<Remote>,
    pub below: BTreeMap<Vec<u8>, Remote>,
}

impl Scan {
    /// What the server has at `rel` below the top (the top itself for the
    /// empty path).
    pub(super) fn at(&self, rel: &[u8]) -> Option<&Remote> {
        match rel.is_empty() {
            true => self.top.as_ref(),
            false => self.below.get(rel),
        }
    }
}

/// Scans `path` on the server; with `digests`, each file's digest too.
pub(super) fn scan(
    session: &mut Session,
    host: &str,
    path: &OsStr,
    digests: bool,
) -> Result<Scan, CopyError> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let op = match digests {
        true => rexec_proto::TreeOp::ScanDigests,
        false => rexec_proto::TreeOp::Scan,
    };
    session.send(&ClientMsg::Tree {
        id,
        path: path.as_bytes().to_vec(),
        op,
    })?;
    let shown = format!("{host}:{}", lossy(path));
    let bytes = collect(session, id, &shown, "scan")?;
    parse(&bytes, digests)
        .ok_or_else(|| CopyError::Failed(format!("{shown}: the server sent a broken scan")))
}

/// Removes `path` on the server (a file, a symlink or an empty directory).
pub(super) fn remove(session: &mut Session, host: &str, path: &OsStr) -> Result<(), CopyError> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    session.send(&ClientMsg::Tree {
        id,
        path: path.as_bytes().to_vec(),
        op: rexec_proto::TreeOp::Remove,
    })?;
    let (status, stderr) = wait(session, id, |_| Ok(()))?;
    check(status, &stderr, &format!("removing {host}:{}", lossy(path)))
}

/// Takes `n` bytes off the front of `bytes`.
fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

/// Takes bytes up to a NUL (and the NUL).
fn take_name<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = bytes.iter().position(|&b| b == 0)?;
    let name = take(bytes, end)?;
    take(bytes, 1)?;
    Some(name)
}

fn take_u32(bytes: &mut &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
}

fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(take(bytes, 8)?.try_into().ok()?))
}

/// Parses a scan; `None` if anything in it is out of place.
pub(super) fn parse(mut bytes: &[u8], digests: bool) -> Option<Scan> {
    let mut scan = Scan::default();
    let mut first = true;
    while !bytes.is_empty() {
        let kind = take(&mut bytes, 1)?[0];
        let name = take_name(&mut bytes)?.to_vec();
        // The top comes first, with an empty name, and only then.
        if first != name.is_empty() {
            return None;
        }
        let entry = match kind {
            b'n' if first => {
                first = false;
                continue;
            }
            b'f' => {
                let size = take_u64(&mut bytes)?;
                let mtime = take_u64(&mut bytes)? as i64;
                let _nanos = take_u32(&mut bytes)?;
                let mode = take_u32(&mut bytes)?;
                let digest = match digests {
                    true => Some(take(&mut bytes, DIGEST_LEN)?.try_into().ok()?),
                    false => None,
                };
                Remote::File {
                    size,
                    mtime,
                    mode,
                    digest,
                }
            }
            b'd' => {
                let mode = take_u32(&mut bytes)?;
                let mtime = take_u64(&mut bytes)? as i64;
                let _nanos = take_u32(&mut bytes)?;
                Remote::Dir { mode, mtime }
            }
            b'l' => Remote::Symlink {
                target: take_name(&mut bytes)?.to_vec(),
            },
            b'o' => Remote::Other,
            _ => return None,
        };
        if first {
            scan.top = Some(entry);
            first = false;
            continue;
        }
        // A name that would lead out of the top: the scan is a lie.
        beneath(Path::new(""), Path::new(OsStr::from_bytes(&name)))?;
        if scan.below.insert(name, entry).is_some() {
            return None;
        }
    }
    Some(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &[u8], size: u64, mtime: i64) -> Vec<u8> {
        let mut v = vec![b'f'];
        v.extend_from_slice(name);
        v.push(0);
        v.extend_from_slice(&size.to_be_bytes());
        v.extend_from_slice(&mtime.to_be_bytes());
        v.extend_from_slice(&7u32.to_be_bytes());
        v.extend_from_slice(&0o644u32.to_be_bytes());
        v
    }

    /// The top: a directory, mode 0755, mtime 1000.
    fn top() -> Vec<u8> {
        let mut v = b"d\0".to_vec();
        v.extend_from_slice(&0o755u32.to_be_bytes());
        v.extend_from_slice(&1000i64.to_be_bytes());
        v.extend_from_slice(&9u32.to_be_bytes());
        v
    }

    #[test]
    fn a_scan_is_parsed_and_a_lie_is_refused() {
        let mut ok = top();
        ok.extend(file(b"a", 5, 100));
        ok.extend(b"lsub/link\0target\0");
        let s = parse(&ok, false).unwrap();
        assert_eq!(
            s.top,
            Some(Remote::Dir {
                mode: 0o755,
                mtime: 1000
            })
        );
        assert_eq!(
            s.below[&b"a"[..]],
            Remote::File {
                size: 5,
                mtime: 100,
                mode: 0o644,
                digest: None
            }
        );
        assert_eq!(
            s.below[&b"sub/link"[..]],
            Remote::Symlink {
                target: b"target".to_vec()
            }
        );
        // Nothing there.
        assert!(parse(b"n\0", false).unwrap().top.is_none());
        // Lies: a name that climbs out, a second top, a duplicate, a cut
        // entry, an unknown kind, entries before the top.
        let mut climb = top();
        climb.extend(file(b"../x", 1, 1));
        let mut dup = ok.clone();
        dup.extend(file(b"a", 1, 1));
        for bad in [
            climb,
            dup,
            ok[..ok.len() - 3].to_vec(),
            top()[..top().len() - 2].to_vec(),
            b"z\0".to_vec(),
            file(b"a", 1, 1),
        ] {
            assert!(parse(&bad, false).is_none(), "{bad:?}");
        }
    }
}
