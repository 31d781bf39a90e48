//! `rexec sync SRC... HOST:DEST` (issue 46): a tree made exactly, then
//! only what changed sent again, `--delete` and `-n`, and a lying
//! server's scan refused.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rexec_tests::*;

/// The tree every test starts from: modes, an old mtime, a symlink, an
/// empty directory and a name that is not UTF-8.
fn make_tree(dir: &TempDir) -> std::path::PathBuf {
    let src = dir.path("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("a"), "alpha\n").unwrap();
    std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(src.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.join("sub/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(src.join("sub/deeper/old"), "from 2001\n").unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(src.join("sub/deeper/old"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    std::os::unix::fs::symlink("sub/run.sh", src.join("link")).unwrap();
    std::fs::write(src.join(OsStr::from_bytes(b"bytes-\xff-name")), "odd\n").unwrap();
    // Directories with old times too, set once all inside them is made.
    for d in ["sub/deeper", "empty", ""] {
        std::fs::File::open(src.join(d))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    src
}

/// `rexec sync ARGS...` against `d`, with DEST on it.
fn sync(d: &Daemon, args: &[&str], dest: &Path) -> Ran {
    run(rexec()
        .arg("sync")
        .args(args)
        .arg(format!("{}:{}", d.host(), dest.display())))
}

/// One entry: path, kind, mode, mtime, size, inode, symlink target.
type Entry = (Vec<u8>, String, u32, i64, u64, u64, Vec<u8>);
/// An entry without its inode.
type Content = (Vec<u8>, String, u32, i64, u64, Vec<u8>);

/// Every entry below `top`: its path, kind, mode, mtime, size, inode and
/// (for a symlink) target.
fn describe(top: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            let rel = e
                .path()
                .strip_prefix(top)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let (kind, target) = if m.is_symlink() {
                (
                    "l",
                    std::fs::read_link(e.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if m.is_dir() {
                stack.push(e.path());
                ("d", Vec::new())
            } else {
                ("f", Vec::new())
            };
            // Files' and directories' times are kept (a link's cannot be
            // set through it), and files' sizes.
            let (mtime, size) = match kind {
                "f" => (m.mtime(), m.len()),
                "d" => (m.mtime(), 0),
                _ => (0, 0),
            };
            let mode = if kind == "l" { 0 } else { m.mode() & 0o7777 };
            out.push((rel, kind.to_string(), mode, mtime, size, m.ino(), target));
        }
    }
    out.sort();
    out
}

/// `describe` without the inodes: what a copy must equal.
fn content(top: &Path) -> Vec<Content> {
    describe(top)
        .into_iter()
        .map(|(r, k, m, t, s, _, l)| (r, k, m, t, s, l))
        .collect()
}

fn inodes(top: &Path) -> Vec<(Vec<u8>, u64)> {
    describe(top).into_iter().map(|e| (e.0, e.5)).collect()
}

#[test]
fn a_tree_is_made_exactly_and_a_resync_rewrites_nothing() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-exact");
    let src = make_tree(&dir);
    let dst = dir.path("dst");
    let r = sync(&d, &[&src.display().to_string()], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(content(&dst.join("src")), content(&src));
    let mtime = |p: &Path| p.metadata().unwrap().mtime();
    assert_eq!(mtime(&dst.join("src")), 1_000_000_000, "the top's time");
    // The same bytes too.
    assert_eq!(
        std::fs::read(dst.join("src").join(OsStr::from_bytes(b"bytes-\xff-name"))).unwrap(),
        b"odd\n"
    );
    // Nothing changed: nothing is sent, and no file is rewritten.
    let before = inodes(&dst);
    let r = sync(&d, &[&src.display().to_string()], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("sent 0 (0 bytes)"), "{}", r.stderr);
    assert_eq!(inodes(&dst), before);
    // A directory's time alone changed: -n says so, and a sync sets it
    // again, rewriting nothing.
    let was = mtime(&dst.join("src/sub"));
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_100_000_000);
    std::fs::File::open(src.join("sub"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    let r = sync(&d, &["-n", &src.display().to_string()], &dst);
    let line = format!("touch {}", dst.join("src/sub").display());
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.lines().any(|l| l == line), "{out}");
    assert_eq!(mtime(&dst.join("src/sub")), was, "-n changed it");
    let r = sync(&d, &[&src.display().to_string()], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(mtime(&dst.join("src/sub")), 1_100_000_000);
    assert_eq!(inodes(&dst), before);
}

#[test]
fn an_edit_sends_that_file_only() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-edit");
    let src = make_tree(&dir);
    let dst = dir.path("dst");
    assert_eq!(sync(&d, &[&src.display().to_string()], &dst).code, Some(0));
    let before = inodes(&dst);
    std::fs::write(src.join("sub/run.sh"), "#!/bin/sh\necho changed\n").unwrap();
    let r = sync(&d, &[&src.display().to_string()], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("sent 1 "), "{}", r.stderr);
    assert_eq!(content(&dst.join("src")), content(&src));
    let after = inodes(&dst);
    for ((rel, was), (_, now)) in before.iter().zip(&after) {
        let edited = rel.as_slice() == b"src/sub/run.sh";
        assert_eq!(was != now, edited, "{}", String::from_utf8_lossy(rel));
    }
}

#[test]
fn delete_removes_what_went_away_and_nothing_else() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-delete");
    let src = make_tree(&dir);
    let dst = dir.path("dst");
    // `src/`: its contents straight into dst; a file of dst's own beside.
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(dir.path("outside"), "keep").unwrap();
    let contents = format!("{}/", src.display());
    assert_eq!(sync(&d, &[&contents], &dst).code, Some(0));
    assert!(dst.join("a").exists() && !dst.join("src").exists());
    std::fs::remove_dir_all(src.join("sub")).unwrap();
    std::fs::remove_file(src.join("a")).unwrap();
    // Without --delete nothing goes.
    assert_eq!(sync(&d, &[&contents], &dst).code, Some(0));
    assert!(dst.join("a").exists() && dst.join("sub/deeper/old").exists());
    // -n says what it would remove, and removes nothing.
    let r = sync(&d, &["--delete", "-n", &contents], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.out()
            .contains(&format!("delete {}", dst.join("sub/deeper/old").display())),
        "{}",
        r.out()
    );
    assert!(dst.join("a").exists() && dst.join("sub/deeper/old").exists());
    // --delete: exactly what went away.
    let r = sync(&d, &["--delete", &contents], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!dst.join("a").exists() && !dst.join("sub").exists());
    assert_eq!(content(&dst), content(&src));
    assert_eq!(
        std::fs::read_to_string(dir.path("outside")).unwrap(),
        "keep"
    );
}

#[test]
fn a_dry_run_changes_nothing() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-dry");
    let src = make_tree(&dir);
    let dst = dir.path("dst");
    let r = sync(&d, &["-n", &src.display().to_string()], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!dst.exists(), "a dry run made {}", dst.display());
    assert!(
        r.out()
            .contains(&format!("send {}", dst.join("src/a").display())),
        "{}",
        r.out()
    );
    assert!(r.stderr.contains("would send"), "{}", r.stderr);
}

#[test]
fn a_lying_scan_is_refused_before_anything_is_removed() {
    use rexec_proto::{ClientMsg, ServerMsg, TreeOp};
    use rexec_tests::liar::{Liar, Reply, exited, stdout};
    use std::sync::{Arc, Mutex};
    let removes = Arc::new(Mutex::new(0));
    let seen = removes.clone();
    let liar = Liar::start("rexecd 0.1.0", move |msg| match msg {
        ClientMsg::Tree {
            id,
            op: TreeOp::Scan,
            ..
        } => {
            // The top (mode 0755, mtime and nanoseconds 0), then a name
            // that climbs out of it.
            let mut scan = b"d\0\x00\x00\x01\xed".to_vec();
            scan.extend_from_slice(&[0; 12]);
            scan.extend_from_slice(b"l../../etc/victim\0x\0");
            vec![
                Reply::Msg(ServerMsg::Started { id: *id, pid: 1 }),
                stdout(*id, &scan),
                exited(*id, 0),
            ]
        }
        ClientMsg::Tree {
            id,
            op: TreeOp::Remove,
            ..
        } => {
            *seen.lock().unwrap() += 1;
            vec![exited(*id, 0)]
        }
        _ => vec![],
    });
    let dir = TempDir::new("sync-liar");
    std::fs::create_dir_all(dir.path("src")).unwrap();
    let r = run(rexec().args([
        "sync",
        "--delete",
        &format!("{}/", dir.path("src").display()),
        &format!("{}:/srv/dst", liar.host()),
    ]));
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("broken scan"), "{}", r.stderr);
    assert_eq!(*removes.lock().unwrap(), 0);
    // Down: the same lie, and nothing local is touched.
    std::fs::write(dir.path("src/keep"), "mine").unwrap();
    let r = run(rexec().args([
        "sync",
        "--delete",
        &format!("{}:/srv/dst/", liar.host()),
        &dir.path("src").display().to_string(),
    ]));
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("broken scan"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path("src/keep")).unwrap(),
        "mine"
    );
}

#[test]
fn many_small_files_go_many_at_once_and_arrive_whole() {
    // More files than puts in flight (16), of many sizes, in a few
    // directories: each must arrive byte for byte with its own time.
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-many");
    let src = dir.path("many");
    for i in 0..200u32 {
        let sub = src.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        let data: Vec<u8> = (0..i * 97).map(|n| (n * 31 + i) as u8).collect();
        std::fs::write(sub.join(format!("f{i}")), data).unwrap();
    }
    let dst = dir.path("dst");
    let r = sync(&d, &[&src.display().to_string()], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(content(&dst.join("many")), content(&src));
    for i in 0..200u32 {
        let rel = format!("d{}/f{i}", i % 7);
        assert_eq!(
            std::fs::read(dst.join("many").join(&rel)).unwrap(),
            std::fs::read(src.join(&rel)).unwrap(),
            "{rel}"
        );
    }
}

/// `rexec sync ARGS... HOST:SRC LOCAL` against `d`.
fn sync_down(d: &Daemon, args: &[&str], src: &str, local: &Path) -> Ran {
    run(rexec()
        .arg("sync")
        .args(args)
        .arg(format!("{}:{src}", d.host()))
        .arg(local))
}

#[test]
fn down_a_tree_is_made_exactly_and_only_changes_come_again() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-down");
    let src = make_tree(&dir);
    let local = dir.path("local");
    std::fs::create_dir_all(&local).unwrap();
    let s = src.display().to_string();
    let r = sync_down(&d, &[], &s, &local);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(content(&local.join("src")), content(&src));
    // No change: nothing fetched, no inode rewritten.
    let before = inodes(&local);
    let r = sync_down(&d, &[], &s, &local);
    assert!(r.stderr.contains("sent 0 (0 bytes)"), "{}", r.stderr);
    assert_eq!(inodes(&local), before);
    // One edit there: that file only.
    std::fs::write(src.join("a"), "alpha, longer\n").unwrap();
    let r = sync_down(&d, &[], &s, &local);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let after = inodes(&local);
    for ((rel, was), (_, now)) in before.iter().zip(&after) {
        assert_eq!(
            was != now,
            rel.as_slice() == b"src/a",
            "{}",
            String::from_utf8_lossy(rel)
        );
    }
    assert_eq!(content(&local.join("src")), content(&src));
}

#[test]
fn down_delete_removes_only_what_went_away_and_follows_no_planted_link() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-down-delete");
    let src = make_tree(&dir);
    let local = dir.path("local");
    let contents = format!("{}/", src.display());
    assert_eq!(sync_down(&d, &[], &contents, &local).code, Some(0));
    assert!(local.join("a").exists());
    // A link planted where the server has a directory, pointing outside.
    let outside = dir.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::remove_dir_all(local.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, local.join("sub")).unwrap();
    // And something only the local side has.
    std::fs::write(local.join("mine"), "local only").unwrap();
    let r = sync_down(&d, &["-n", "--delete"], &contents, &local);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(local.join("mine").exists(), "a dry run deleted");
    let r = sync_down(&d, &["--delete"], &contents, &local);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // The link was replaced by the directory; nothing went through it.
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    assert!(!local.join("sub").symlink_metadata().unwrap().is_symlink());
    assert!(!local.join("mine").exists());
    assert_eq!(content(&local), content(&src));
}

#[test]
fn to_every_host_of_a_list_at_once() {
    // Two hosts, each confining its paths to a root of its own, so the
    // same DEST is a different directory here.
    let dir = TempDir::new("sync-many-hosts");
    let src = make_tree(&dir);
    let mut conf = String::new();
    let mut daemons = Vec::new();
    for i in 1..=2 {
        let root = dir.path(&format!("root{i}"));
        std::fs::create_dir_all(&root).unwrap();
        let d = Daemon::start(&["--files-root", &root.display().to_string()]);
        conf.push_str(&format!("[hosts.n{i}]\naddress = \"{}\"\n", d.host()));
        daemons.push(d);
    }
    std::fs::write(dir.path("config.toml"), conf).unwrap();
    let sync_all = |extra: &[&str]| {
        run(rexec()
            .env("REXEC_CONFIG", dir.path("config.toml"))
            .args(["sync", "-w", "n[1-2]"])
            .args(extra)
            .arg(&src)
            .arg("/dst"))
    };
    // A dry run: each line says its host.
    let r = sync_all(&["-n"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.out().contains("n1: send /dst/src/a"), "{}", r.out());
    assert!(r.out().contains("n2: send /dst/src/a"), "{}", r.out());
    assert!(!dir.path("root1/dst").exists());
    let r = sync_all(&[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.trim_end().ends_with("rexec sync: 2 ok"),
        "{}",
        r.stderr
    );
    for i in 1..=2 {
        assert_eq!(
            content(&dir.path(&format!("root{i}/dst/src"))),
            content(&src)
        );
    }
    // With -w, DEST is a plain path.
    let r = run(rexec()
        .args(["sync", "-w", "127.0.0.1"])
        .arg(&src)
        .arg("127.0.0.1:1:/dst"));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
}

/// Writes `text` over `path` keeping its size and modification time, so
/// that only its bytes differ (what the quick check cannot see).
fn same_size_same_time(path: &Path, text: &str) {
    let before = std::fs::metadata(path).unwrap();
    assert_eq!(before.len(), text.len() as u64);
    std::fs::write(path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
}

#[test]
fn checksum_sees_a_change_that_kept_size_and_time_both_ways() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-checksum");
    let src = make_tree(&dir);
    let dst = dir.path("dst");
    let s = src.display().to_string();
    assert_eq!(sync(&d, &[&s], &dst).code, Some(0));
    same_size_same_time(&src.join("a"), "ALPHA\n");
    // The quick check is fooled, as rsync's is.
    let r = sync(&d, &[&s], &dst);
    assert!(r.stderr.contains("sent 0 "), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dst.join("src/a")).unwrap(),
        "alpha\n"
    );
    // --checksum is not, and sends that file alone.
    let r = sync(&d, &["--checksum", &s], &dst);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("sent 1 "), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dst.join("src/a")).unwrap(),
        "ALPHA\n"
    );
    // Down: the same, the other way.
    let local = dir.path("local");
    std::fs::create_dir_all(&local).unwrap();
    assert_eq!(sync_down(&d, &[], &s, &local).code, Some(0));
    same_size_same_time(&src.join("sub/run.sh"), "#!/bin/rc\n");
    let r = sync_down(&d, &[], &s, &local);
    assert!(r.stderr.contains("sent 0 "), "{}", r.stderr);
    let r = sync_down(&d, &["--checksum"], &s, &local);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("sent 1 "), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(local.join("src/sub/run.sh")).unwrap(),
        "#!/bin/rc\n"
    );
}

#[test]
fn small_files_go_in_batches_and_to_an_older_server_one_put_each() {
    use rexec_proto::PutWhat;
    let d = Daemon::start(&[]);
    let dir = TempDir::new("sync-batch");
    let src = dir.path("tree");
    for i in 0..40u32 {
        let sub = src.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    // Protocol 10: one batch put for the 3 directories and the 40 files,
    // one for the directories' times; a put of its own for the top only
    // (made, and its time at the end).
    let (addr, puts) = rexec_tests::puts::recorded(&d, false);
    let r = run(rexec()
        .arg("sync")
        .arg(&src)
        .arg(format!("{addr}:{}", dir.path("new").display())));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(content(&dir.path("new/tree")), content(&src));
    {
        let puts = puts.lock().unwrap();
        let count = |what: PutWhat| puts.iter().filter(|w| **w == what).count();
        assert_eq!(count(PutWhat::Batch), 2, "{puts:?}");
        assert_eq!(count(PutWhat::File), 0, "{puts:?}");
        assert_eq!(puts.len(), 4, "{puts:?}");
    }
    // An older server: a put for each file, and the same tree.
    let (addr, puts) = rexec_tests::puts::recorded(&d, true);
    let r = run(rexec()
        .arg("sync")
        .arg(&src)
        .arg(format!("{addr}:{}", dir.path("old").display())));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(content(&dir.path("old/tree")), content(&src));
    let puts = puts.lock().unwrap();
    assert!(!puts.contains(&PutWhat::Batch), "{puts:?}");
    assert_eq!(puts.iter().filter(|w| **w == PutWhat::File).count(), 40);
}

#[test]
fn down_small_files_are_asked_for_many_at_once() {
    use rexec_proto::{Checksum, ClientMsg, GET_HEADER_LEN, ServerMsg, TreeOp};
    use rexec_tests::liar::{Liar, Reply, exited, stdout};
    // A server that answers no get until it has been asked for all three
    // files: a client that waits for each file before it asks for the
    // next would never get one.
    let files: [(&str, &[u8]); 3] = [("a", b"first"), ("b", b"second"), ("c", b"third")];
    let mut waiting: Vec<(u32, Vec<u8>)> = Vec::new();
    let liar = Liar::start("rexecd 0.1.0", move |msg| match msg {
        ClientMsg::Tree {
            id,
            op: TreeOp::Scan,
            ..
        } => {
            // The top (mode 0755, mtime 1000), then each file.
            let mut scan = b"d\0".to_vec();
            scan.extend_from_slice(&0o755u32.to_be_bytes());
            scan.extend_from_slice(&1000i64.to_be_bytes());
            scan.extend_from_slice(&0u32.to_be_bytes());
            for (name, data) in files {
                scan.push(b'f');
                scan.extend_from_slice(name.as_bytes());
                scan.push(0);
                scan.extend_from_slice(&(data.len() as u64).to_be_bytes());
                scan.extend_from_slice(&1000i64.to_be_bytes());
                scan.extend_from_slice(&0u32.to_be_bytes());
                scan.extend_from_slice(&0o644u32.to_be_bytes());
            }
            vec![
                Reply::Msg(ServerMsg::Started { id: *id, pid: 1 }),
                stdout(*id, &scan),
                exited(*id, 0),
            ]
        }
        ClientMsg::Get { id, path } => {
            waiting.push((*id, path.clone()));
            if waiting.len() < files.len() {
                return vec![];
            }
            let mut replies = Vec::new();
            for (id, path) in waiting.drain(..) {
                let name = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
                let data = files
                    .iter()
                    .find(|(n, _)| n.as_bytes() == name)
                    .map_or(&b""[..], |(_, d)| *d);
                let mut stream = Vec::with_capacity(GET_HEADER_LEN);
                stream.extend_from_slice(&(data.len() as u64).to_be_bytes());
                stream.extend_from_slice(&0o644u32.to_be_bytes());
                stream.extend_from_slice(&1000i64.to_be_bytes());
                stream.extend_from_slice(data);
                let mut h = Checksum::Blake3.hasher();
                h.update(data);
                stream.extend_from_slice(&h.finalize());
                replies.push(Reply::Msg(ServerMsg::Started { id, pid: 1 }));
                replies.push(stdout(id, &stream));
                replies.push(exited(id, 0));
            }
            replies
        }
        _ => vec![],
    });
    let dir = TempDir::new("sync-down-many");
    let r = run(rexec().args([
        "sync",
        &format!("{}:/srv/tree", liar.host()),
        &dir.path("here").display().to_string(),
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for (name, data) in files {
        assert_eq!(
            std::fs::read(dir.path("here/tree").join(name)).unwrap(),
            data
        );
    }
}
