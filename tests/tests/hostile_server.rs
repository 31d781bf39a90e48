//! The client against a lying server (issue 21): a server may be
//! compromised or buggy, and nothing it sends may make `rexec` write
//! outside what the user asked for, keep unbounded memory, or paint the
//! user's terminal. `rexec_tests::liar` plays the server.

use std::os::unix::fs::PermissionsExt;

use rexec_proto::{ClientMsg, ServerMsg};
use rexec_tests::liar::{Liar, Reply, exited, stdout};
use rexec_tests::*;
use sha2::{Digest, Sha256};

/// A Get's whole answer: header (size, mode, mtime), the bytes, SHA-256.
fn get_reply(id: u32, data: &[u8], mode: u32) -> Vec<Reply> {
    let mut out = Vec::new();
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(&mode.to_be_bytes());
    out.extend_from_slice(&1_000_000_000i64.to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&Sha256::digest(data));
    vec![
        Reply::Msg(ServerMsg::Started { id, pid: 4242 }),
        stdout(id, &out),
        exited(id, 0),
    ]
}

/// A liar that lists `names` for any `find` and serves "pwned\n" (mode
/// `mode`) for any Get.
fn lying_files(names: &'static [&'static str], mode: u32) -> Liar {
    Liar::start("rexecd 0.1.0", move |msg| match msg {
        ClientMsg::Exec(e) => {
            let listing: Vec<u8> = names.iter().flat_map(|n| n.bytes().chain([0])).collect();
            vec![
                Reply::Msg(ServerMsg::Started {
                    id: e.id,
                    pid: 4242,
                }),
                stdout(e.id, &listing),
                exited(e.id, 0),
            ]
        }
        ClientMsg::Get { id, .. } => get_reply(*id, b"pwned\n", mode),
        _ => vec![],
    })
}

#[test]
fn a_listing_that_climbs_out_of_the_target_is_refused() {
    let dir = TempDir::new("liar-climb");
    std::fs::create_dir(dir.path("dest")).unwrap();
    std::fs::create_dir(dir.path("outside")).unwrap();
    // dest/data/../../outside/PWNED is dir/outside/PWNED.
    let liar = lying_files(
        &["/srv/data/ok.txt", "/srv/data/../../outside/PWNED"],
        0o644,
    );
    let r = run(rexec().args([
        "cp",
        "-r",
        &format!("{}:/srv/data", liar.host()),
        &dir.path("dest").display().to_string(),
    ]));
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("refused"), "{}", r.stderr);
    assert!(
        !dir.path("outside/PWNED").exists(),
        "written outside the target"
    );
    assert_eq!(
        std::fs::read(dir.path("dest/data/ok.txt")).unwrap(),
        b"pwned\n",
        "the honest entry before it was copied"
    );
}

#[test]
fn a_symlink_in_the_destination_does_not_lead_out() {
    let dir = TempDir::new("liar-link");
    std::fs::create_dir_all(dir.path("dest/data")).unwrap();
    std::fs::create_dir(dir.path("outside")).unwrap();
    std::os::unix::fs::symlink(dir.path("outside"), dir.path("dest/data/sub")).unwrap();
    let liar = lying_files(&["/srv/data/sub/PWNED"], 0o644);
    let r = run(rexec().args([
        "cp",
        "-r",
        &format!("{}:/srv/data", liar.host()),
        &dir.path("dest").display().to_string(),
    ]));
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(
        !dir.path("outside/PWNED").exists(),
        "followed a symlink out"
    );
}

#[test]
fn modes_from_the_wire_never_set_special_bits() {
    let dir = TempDir::new("liar-mode");
    let liar = lying_files(&[], 0o4777);
    // rexec inherits this process's umask.
    let umask = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    for (flag, want) in [("-p", 0o777), ("", 0o777 & !umask)] {
        let dest = dir.path(&format!("file{flag}"));
        let mut cmd = rexec();
        cmd.arg("cp");
        if !flag.is_empty() {
            cmd.arg(flag);
        }
        let r = run(cmd.arg(format!("{}:/srv/x", liar.host())).arg(&dest));
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, want, "cp {flag}: mode {mode:o}");
    }
}
