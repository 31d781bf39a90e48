//! Files both ways (issue 15): `rexec cp` against the real rexecd.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rexec_proto::*;
use rexec_tests::wire::{hello, send};
use rexec_tests::*;

fn random_file(path: &std::path::Path, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let data: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .take(len)
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".rexec-"))
        .collect()
}

#[test]
fn sixty_four_mib_up_and_back_are_identical() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp64");
    let data = random_file(&dir.path("big"), 64 << 20);
    std::fs::create_dir(dir.path("there")).unwrap();
    let dest = format!("{}:{}", d.host(), dir.path("there").display());
    let r = run_for(
        rexec().args(["cp", &dir.path("big").display().to_string(), &dest]),
        Duration::from_secs(120),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(std::fs::read(dir.path("there/big")).unwrap() == data, "up");
    let src = format!("{}:{}", d.host(), dir.path("there/big").display());
    let r = run_for(
        rexec().args(["cp", &src, &dir.path("back").display().to_string()]),
        Duration::from_secs(120),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(std::fs::read(dir.path("back")).unwrap() == data, "down");
    assert!(leftovers(&dir.0).is_empty() && leftovers(&dir.path("there")).is_empty());
}

#[test]
fn a_tree_with_r_and_p_keeps_modes_and_times() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cptree");
    std::fs::create_dir_all(dir.path("src/sub")).unwrap();
    std::fs::write(dir.path("src/a"), "a").unwrap();
    std::fs::write(dir.path("src/sub/b"), "b").unwrap();
    std::fs::set_permissions(
        dir.path("src/sub/b"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::fs::set_permissions(dir.path("src/a"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(dir.path("src/a"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let dest = format!("{}:{}", d.host(), dir.path("dst").display());
    let r = run(rexec().args([
        "cp",
        "-r",
        "-p",
        &dir.path("src").display().to_string(),
        &dest,
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // dst did not exist: it is the copy of src, as with cp -r and scp -r
    // (it was dst/src before issue 22).
    let mode = |p: &str| std::fs::metadata(dir.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(std::fs::read_to_string(dir.path("dst/sub/b")).unwrap(), "b");
    assert_eq!(mode("dst/a"), 0o755);
    assert_eq!(mode("dst/sub/b"), 0o640);
    assert_eq!(
        std::fs::metadata(dir.path("dst/a"))
            .unwrap()
            .modified()
            .unwrap(),
        old
    );
}

#[test]
fn a_tree_of_small_files_goes_in_one_batch_and_without_p_as_cp_does() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cpbatch");
    for i in 0..30u32 {
        let sub = dir.path(&format!("src/d{}", i % 4));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}")), format!("small {i}\n")).unwrap();
    }
    // A new file gets the source's mode under the server's umask (rexecd
    // runs with 022 here), and a file it replaces keeps its own; no -p, so
    // no time is kept.
    std::fs::set_permissions(
        dir.path("src/d0/f0"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(dir.path("src/d0/f0"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    // dst exists: the copy is dst/src, as with cp -r.
    std::fs::create_dir_all(dir.path("dst/src/d1")).unwrap();
    std::fs::write(dir.path("dst/src/d1/f1"), "was here").unwrap();
    std::fs::set_permissions(
        dir.path("dst/src/d1/f1"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (addr, puts) = rexec_tests::puts::recorded(&d, false);
    let r = run(rexec().args([
        "cp",
        "-r",
        &dir.path("src").display().to_string(),
        &format!("{addr}:{}", dir.path("dst").display()),
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for i in 0..30u32 {
        let rel = format!("d{}/f{i}", i % 4);
        assert_eq!(
            std::fs::read_to_string(dir.path("dst/src").join(&rel)).unwrap(),
            format!("small {i}\n"),
            "{rel}"
        );
    }
    let mode = |p: &str| std::fs::metadata(dir.path(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("dst/src/d0/f0"), 0o755);
    assert_eq!(mode("dst/src/d1/f1"), 0o600);
    let modified = std::fs::metadata(dir.path("dst/src/d0/f0"))
        .unwrap()
        .modified()
        .unwrap();
    assert_ne!(modified, old);
    let puts = puts.lock().unwrap();
    assert_eq!(
        puts.iter().filter(|w| **w == PutWhat::Batch).count(),
        1,
        "{puts:?}"
    );
    assert!(!puts.contains(&PutWhat::File), "{puts:?}");
}

/// Every `Stderr` chunk among `msgs`, joined.
fn stderr_of(msgs: &[ServerMsg]) -> String {
    let bytes: Vec<u8> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Stderr { data, .. } => Some(data.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn a_broken_copy_leaves_the_old_file_and_no_temporary() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cpbroken");
    std::fs::write(dir.path("target"), "old").unwrap();
    let put = |size: u64| {
        ClientMsg::Put(Put {
            id: 1,
            dest: dir.path("target").display().to_string().into_bytes(),
            name: b"x".to_vec(),
            size,
            ..Put::default()
        })
    };
    // Half the bytes, then the client is gone.
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    send(&mut sock, &put(1000));
    // The helper is ready (its byte arrived): the transfer is under way.
    rexec_tests::wire::read_until(&mut sock, &mut FrameDecoder::new(), |m| {
        matches!(m, ServerMsg::Stdout { .. })
    });
    send(
        &mut sock,
        &ClientMsg::Stdin {
            id: 1,
            data: vec![b'n'; 500],
        },
    );
    drop(sock);
    assert!(d.wait_log("put ", PATIENCE), "{}", d.log());
    // All the bytes, and a checksum that does not match.
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    send(&mut sock, &put(3));
    send(
        &mut sock,
        &ClientMsg::Stdin {
            id: 1,
            data: b"new".to_vec(),
        },
    );
    send(
        &mut sock,
        &ClientMsg::PutEnd {
            id: 1,
            digest: vec![0; 32],
        },
    );
    let msgs = rexec_tests::wire::read_until(&mut sock, &mut FrameDecoder::new(), |m| {
        matches!(m, ServerMsg::Exited(_))
    });
    assert!(stderr_of(&msgs).contains("checksum"), "{msgs:?}");
    // Exited comes after the helper exited: what it left is there now.
    assert_eq!(std::fs::read_to_string(dir.path("target")).unwrap(), "old");
    assert!(leftovers(&dir.0).is_empty(), "{:?}", leftovers(&dir.0));
    // More bytes than the Put said: refused, not written (the checksum is
    // apart from the data, so extra data cannot pass for it).
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    send(&mut sock, &put(3));
    send(
        &mut sock,
        &ClientMsg::Stdin {
            id: 1,
            data: b"newer".to_vec(),
        },
    );
    let msgs = rexec_tests::wire::read_until(&mut sock, &mut FrameDecoder::new(), |m| {
        matches!(m, ServerMsg::Exited(_))
    });
    assert!(
        stderr_of(&msgs).contains("more than its 3 bytes"),
        "{msgs:?}"
    );
    assert_eq!(std::fs::read_to_string(dir.path("target")).unwrap(), "old");
    assert!(leftovers(&dir.0).is_empty(), "{:?}", leftovers(&dir.0));
}

#[test]
fn files_root_confines_every_path() {
    let dir = TempDir::new("cproot");
    std::fs::create_dir_all(dir.path("root/in")).unwrap();
    std::fs::create_dir_all(dir.path("outside")).unwrap();
    std::fs::write(dir.path("outside/secret"), "s").unwrap();
    std::os::unix::fs::symlink(dir.path("outside"), dir.path("root/link")).unwrap();
    let root = dir.path("root").display().to_string();
    let d = Daemon::start(&["--files-root", &root]);
    std::fs::write(dir.path("f"), "data").unwrap();
    let f = dir.path("f").display().to_string();
    // Inside: fine, and an absolute path means one inside the root.
    let r = run(rexec().args(["cp", &f, &format!("{}:/in/", d.host())]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path("root/in/f")).unwrap(),
        "data"
    );
    for dest in ["../outside/", "in/../../outside/", "link/"] {
        let r = run(rexec().args(["cp", &f, &format!("{}:{dest}", d.host())]));
        assert_eq!(r.code, Some(1), "{dest}: {}", r.stderr);
        assert!(
            r.stderr.contains("outside the files root"),
            "{dest}: {}",
            r.stderr
        );
    }
    assert!(!dir.path("outside/f").exists(), "a put escaped the root");
    let r = run(rexec().args([
        "cp",
        &format!("{}:link/secret", d.host()),
        &dir.path("got").display().to_string(),
    ]));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!dir.path("got").exists(), "a get escaped the root");
}

#[test]
fn transfers_can_be_turned_off() {
    let dir = TempDir::new("cpoff");
    std::fs::write(dir.path("f"), "x").unwrap();
    let f = dir.path("f").display().to_string();
    for args in [&["--no-files"][..], &["--no-shell"][..]] {
        let d = Daemon::start(args);
        let r = run(rexec().args([
            "cp",
            &f,
            &format!("{}:{}", d.host(), dir.path("g").display()),
        ]));
        assert_eq!(r.code, Some(1), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("forbidden"), "{args:?}: {}", r.stderr);
    }
    assert!(!dir.path("g").exists());
}

#[test]
fn copying_to_three_hosts_at_once() {
    let daemons: Vec<Daemon> = (0..3).map(|_| Daemon::start(&[])).collect();
    let dir = TempDir::new("cpmany");
    let mut conf = String::new();
    for (i, d) in daemons.iter().enumerate() {
        conf.push_str(&format!("[hosts.n{}]\naddress = \"{}\"\n", i + 1, d.host()));
        std::fs::create_dir(dir.path(&format!("n{}", i + 1))).unwrap();
    }
    std::fs::write(dir.path("config.toml"), conf).unwrap();
    std::fs::write(dir.path("f"), "to all").unwrap();
    // Each "host" is this machine, so each gets its own directory: the
    // same path on every host would be one file here.
    for i in 1..=3 {
        let r = run(rexec()
            .env("REXEC_CONFIG", dir.path("config.toml"))
            .args(["cp", "-w", &format!("n{i}")])
            .arg(dir.path("f"))
            .arg(dir.path(&format!("n{i}"))));
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    let r = run(rexec()
        .env("REXEC_CONFIG", dir.path("config.toml"))
        .args(["cp", "-w", "n[1-3]"])
        .arg(dir.path("f"))
        .arg(dir.path("n2/again")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for i in 1..=3 {
        assert_eq!(
            std::fs::read_to_string(dir.path(&format!("n{i}/f"))).unwrap(),
            "to all"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path("n2/again")).unwrap(),
        "to all"
    );
    assert!(r.stderr.contains("rexec cp: 3 ok"), "{}", r.stderr);
    // A destination missing on every host: each error line says its host,
    // and a summary follows, as after rexec -w (a line had no prefix).
    let missing = dir.path("missing/").display().to_string() + "/";
    let r = run(rexec()
        .env("REXEC_CONFIG", dir.path("config.toml"))
        .args(["cp", "-w", "n[1-3]"])
        .arg(dir.path("f"))
        .arg(&missing));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let (per_host, last) = r.stderr.trim_end().rsplit_once('\n').expect("lines");
    assert_eq!(last, "rexec cp: 0 ok, 3 failed (n[1-3])", "{}", r.stderr);
    for line in per_host.lines() {
        assert!(
            ["n1: ", "n2: ", "n3: "].iter().any(|p| line.starts_with(p)),
            "{line:?} in {}",
            r.stderr
        );
    }
}

#[test]
fn a_tree_comes_down_with_r() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cpdown");
    std::fs::create_dir_all(dir.path("there/tree/deep")).unwrap();
    std::fs::write(dir.path("there/tree/a"), "a").unwrap();
    std::fs::write(dir.path("there/tree/deep/b c"), "b").unwrap();
    std::fs::create_dir(dir.path("here")).unwrap();
    let src = format!("{}:{}", d.host(), dir.path("there/tree").display());
    let r = run(rexec().args(["cp", "-r", &src, &dir.path("here").display().to_string()]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path("here/tree/a")).unwrap(),
        "a"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path("here/tree/deep/b c")).unwrap(),
        "b"
    );
}

#[test]
fn fetching_a_fifo_is_refused_at_once() {
    // Opening a FIFO for reading waits for a writer: the helper hung there.
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp-fifo");
    let fifo = dir.path("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let r = run(rexec()
        .arg("cp")
        .arg(format!("{}:{}", d.host(), fifo.display()))
        .arg(dir.path("copy")));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    assert!(!dir.path("copy").exists());
}

#[test]
fn a_tree_is_listed_within_the_files_root_and_keeps_its_shape() {
    // `cp -r` down listed the tree with `find`, a command like any other:
    // under --files-root it could list (and so fetch the names of) anything.
    let dir = TempDir::new("cp-list");
    let root = dir.path("root");
    std::fs::create_dir_all(root.join("tree/sub")).unwrap();
    std::fs::create_dir_all(root.join("tree/empty")).unwrap();
    std::fs::write(root.join("tree/sub/f"), "f").unwrap();
    std::os::unix::fs::symlink("sub/f", root.join("tree/link")).unwrap();
    std::fs::create_dir_all(dir.path("outside")).unwrap();
    std::fs::write(dir.path("outside/secret"), "s").unwrap();
    let d = Daemon::start(&["--files-root", &root.display().to_string()]);
    // Outside the root: refused, nothing listed or copied.
    std::fs::create_dir(dir.path("got")).unwrap();
    let r = run(rexec()
        .args(["cp", "-r"])
        .arg(format!("{}:../outside", d.host()))
        .arg(dir.path("got")));
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("outside the files root"), "{}", r.stderr);
    assert!(!dir.path("got/outside").exists());
    // Inside: files, the empty directory, and the symlink as a symlink.
    let r = run(rexec()
        .args(["cp", "-r"])
        .arg(format!("{}:/tree", d.host()))
        .arg(dir.path("got")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path("got/tree/sub/f")).unwrap(),
        "f"
    );
    assert!(dir.path("got/tree/empty").is_dir(), "the empty directory");
    assert_eq!(
        std::fs::read_link(dir.path("got/tree/link")).unwrap(),
        std::path::Path::new("sub/f")
    );
}

#[test]
fn an_upload_the_server_refuses_is_refused_before_the_data() {
    // The client streamed the whole file and learned only then that the
    // server would not take it (1 GiB for nothing).
    use rexec_tests::proxy::{Mode, Proxy};
    let dir = TempDir::new("cp-refused");
    let big = dir.path("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    std::fs::create_dir(dir.path("root")).unwrap();
    for (args, why) in [
        (vec!["--no-files"], "off"),
        (
            vec!["--files-root", dir.0.join("root").to_str().unwrap()],
            "outside the files root",
        ),
    ] {
        let d = Daemon::start(&args);
        let proxy = Proxy::start(d.addr, Mode::Pass);
        let dest = format!("{}:../elsewhere/big", proxy.host());
        let r = run(rexec().arg("cp").arg(&big).arg(&dest));
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(r.stderr.contains(why), "{}", r.stderr);
        let sent = proxy.bytes_up();
        assert!(
            sent < 64 << 10,
            "{args:?}: {sent} bytes sent for a refused copy"
        );
    }
}

#[test]
fn ipv6_literals_work_in_copy_specs() {
    // `cp f '[::1]:PORT:/path'` said "missing ']'".
    let d = Daemon::start_at("[::1]:0", &[], &[]);
    let dir = TempDir::new("cp-v6");
    std::fs::write(dir.path("a"), "six").unwrap();
    let spec = format!("[::1]:{}:{}", d.addr.port(), dir.path("b").display());
    let r = run(rexec().arg("cp").arg(dir.path("a")).arg(&spec));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(rexec().arg("cp").arg(&spec).arg(dir.path("c")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(dir.path("c")).unwrap(), "six");
}

#[test]
fn an_interrupted_download_leaves_no_temporary_file() {
    // Ctrl-C, SIGTERM or a dropped connection left .NAME.rexec-PID behind
    // (86-111 MB seen).
    use rexec_tests::proxy::{Mode, Proxy};
    let dir = TempDir::new("cp-interrupted");
    let src = dir.path("big");
    random_file(&src, 16 << 20);
    for (how, want) in [
        ("SIGINT", Some(130)),
        ("SIGTERM", Some(143)),
        ("drop", Some(255)),
    ] {
        let mut d = Daemon::start(&[]);
        let proxy = Proxy::start(d.addr, Mode::Trickle { bytes: 4 << 10 });
        let got = dir.path(&format!("got-{how}"));
        let mut child = rexec()
            .arg("cp")
            .arg(format!("{}:{}", proxy.host(), src.display()))
            .arg(&got)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            wait_until(PATIENCE, || !leftovers(&dir.0).is_empty()),
            "{how}: no temporary file appeared"
        );
        match how {
            // SAFETY: kill(2) shares no memory; it signals the rexec this
            // test started.
            "SIGINT" => unsafe { libc::kill(child.id() as i32, libc::SIGINT) },
            // SAFETY: as above.
            "SIGTERM" => unsafe { libc::kill(child.id() as i32, libc::SIGTERM) },
            _ => {
                let _ = d.child.kill();
                let _ = d.child.wait();
                proxy.set(Mode::Pass);
                0
            }
        };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), want, "{how}");
        assert!(
            leftovers(&dir.0).is_empty(),
            "{how}: {:?}",
            leftovers(&dir.0)
        );
        assert!(!got.exists(), "{how}: a partial file in place");
    }
}

#[test]
fn an_upload_keeps_the_permission_bits_as_scp_does() {
    // job.sh 755 arrived 644, so `cp job.sh H:` then `rexec H ./job.sh`
    // gave 126.
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp-mode");
    let job = dir.path("job.sh");
    std::fs::write(&job, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path("there")).unwrap();
    let r = run(rexec().arg("cp").arg(&job).arg(format!(
        "{}:{}/",
        d.host(),
        dir.path("there").display()
    )));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let there = dir.path("there/job.sh");
    let mode = std::fs::metadata(&there).unwrap().permissions().mode() & 0o7777;
    // rexecd's umask (inherited from this test) applies.
    assert_eq!(mode & 0o111, 0o111, "executable: {mode:o}");
    let r = run(rexec().arg(d.host()).arg(there.display().to_string()));
    assert_eq!(r.out(), "ran\n", "{}", r.stderr);
    // The mode `there` has after a copy of `job` onto it (with -p or not).
    let copied_mode = |preserve: bool| {
        let mut c = rexec();
        c.arg("cp");
        if preserve {
            c.arg("-p");
        }
        let r = run(c.arg(&job).arg(format!("{}:{}", d.host(), there.display())));
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        std::fs::metadata(&there).unwrap().permissions().mode() & 0o7777
    };
    // A file it replaces keeps its own mode; -p sets the source's exactly.
    std::fs::set_permissions(&there, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(copied_mode(false), 0o700);
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o4751)).unwrap();
    assert_eq!(copied_mode(true), 0o751, "exact, without the setuid bit");
    // A setuid and setgid file replaced without -p keeps its plain bits
    // only: the uploader's bytes never become a setuid program.
    std::fs::set_permissions(&there, std::fs::Permissions::from_mode(0o6755)).unwrap();
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        copied_mode(false),
        0o755,
        "the replaced file's 6000 bits are gone"
    );
}

#[test]
fn remote_to_remote_and_many_sources_are_refused_with_what_is_supported() {
    // 127.0.0.1:1 is never reached: the refusal comes first.
    let r = run(rexec().args(["cp", "127.0.0.1:1:/a", "127.0.0.1:1:/b"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("from one server to another"),
        "{}",
        r.stderr
    );
    let r = run(rexec().args(["cp", "-w", "127.0.0.1", "127.0.0.1:1:/a", "logs/"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("does not fetch"), "{}", r.stderr);
}

#[test]
fn a_replaced_file_keeps_its_owner_and_group() {
    // As root, a replaced file became root:root.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (to own a file as another user)");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp-owner");
    let target = dir.path("owned");
    std::fs::write(&target, "old").unwrap();
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    std::fs::write(dir.path("new"), "new").unwrap();
    let r = run(rexec().arg("cp").arg(dir.path("new")).arg(format!(
        "{}:{}",
        d.host(),
        target.display()
    )));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
}

#[test]
fn uploading_onto_a_symlink_replaces_the_link_with_the_sources_mode() {
    // It became a world-writable regular file (the link's 0777).
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp-onto-link");
    std::fs::write(dir.path("other"), "untouched").unwrap();
    std::os::unix::fs::symlink(dir.path("other"), dir.path("link")).unwrap();
    std::fs::write(dir.path("src"), "new").unwrap();
    std::fs::set_permissions(dir.path("src"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let r = run(rexec().arg("cp").arg(dir.path("src")).arg(format!(
        "{}:{}",
        d.host(),
        dir.path("link").display()
    )));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let meta = std::fs::symlink_metadata(dir.path("link")).unwrap();
    assert!(meta.is_file(), "the link was replaced by the file");
    assert_eq!(
        meta.permissions().mode() & 0o7777 & !0o640,
        0,
        "mode {:o}",
        meta.permissions().mode()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path("other")).unwrap(),
        "untouched"
    );
}

#[test]
fn a_tree_down_into_a_new_name_becomes_that_directory_as_with_cp() {
    // cp -r H:/x/tree NEW made NEW/tree/...; cp and scp make NEW the copy.
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp-newdir");
    std::fs::create_dir_all(dir.path("tree/sub")).unwrap();
    std::fs::write(dir.path("tree/sub/f"), "f").unwrap();
    let src = format!("{}:{}", d.host(), dir.path("tree").display());
    let r = run(rexec().args(["cp", "-r", &src]).arg(dir.path("new")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(dir.path("new/sub/f")).unwrap(), "f");
    // Into an existing directory: as its entry of the same name.
    let r = run(rexec().args(["cp", "-r", &src]).arg(dir.path("new")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path("new/tree/sub/f")).unwrap(),
        "f"
    );
}

#[test]
fn a_tree_up_keeps_empty_directories_symlinks_and_with_p_directory_modes() {
    // Empty directories and symlinks were dropped silently, with exit 0.
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp-tree-up");
    std::fs::create_dir_all(dir.path("src/empty")).unwrap();
    std::fs::create_dir_all(dir.path("src/sub")).unwrap();
    std::fs::write(dir.path("src/sub/f"), "f").unwrap();
    std::os::unix::fs::symlink("sub/f", dir.path("src/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", dir.path("src/dangling")).unwrap();
    std::fs::set_permissions(dir.path("src/sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let r = run(rexec()
        .args(["cp", "-r", "-p"])
        .arg(dir.path("src"))
        .arg(format!("{}:{}", d.host(), dir.path("dst").display())));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // dst did not exist: it is the copy of src (cp -r's rule).
    let got = |p: &str| dir.path(&format!("dst/{p}"));
    assert!(got("empty").is_dir(), "the empty directory");
    assert_eq!(std::fs::read_to_string(got("sub/f")).unwrap(), "f");
    assert_eq!(
        std::fs::read_link(got("link")).unwrap(),
        std::path::Path::new("sub/f")
    );
    assert_eq!(
        std::fs::read_link(got("dangling")).unwrap(),
        std::path::Path::new("/nowhere/at/all"),
        "a link is copied as it is, never followed"
    );
    let mode = std::fs::metadata(got("sub")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750, "-p keeps directory modes");
    // Again: dst exists now, so the tree goes in as dst/src.
    let r = run(rexec().args(["cp", "-r"]).arg(dir.path("src")).arg(format!(
        "{}:{}",
        d.host(),
        dir.path("dst").display()
    )));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path("dst/src/sub/f")).unwrap(),
        "f"
    );
}

#[test]
fn file_names_are_bytes_and_arrive_exactly() {
    // café.txt in Latin-1 arrived renamed to U+FFFD with exit 0, and a
    // name that is not UTF-8 was refused as an argument.
    use std::os::unix::ffi::OsStrExt;
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp-bytes");
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::create_dir_all(dir.path("tree")).unwrap();
    std::fs::write(dir.0.join("tree").join(latin1), "latin-1").unwrap();
    std::fs::write(dir.0.join(latin1), "top").unwrap();
    std::fs::create_dir(dir.path("up")).unwrap();
    // A single file, its name not UTF-8, up and back.
    let mut dest = std::ffi::OsString::from(format!("{}:", d.host()));
    dest.push(dir.path("up"));
    dest.push("/");
    let r = run(rexec().arg("cp").arg(dir.0.join(latin1)).arg(&dest));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read(dir.path("up").join(latin1)).unwrap(), b"top");
    let mut src = std::ffi::OsString::from(format!("{}:", d.host()));
    src.push(dir.path("up").join(latin1));
    std::fs::create_dir(dir.path("down")).unwrap();
    let r = run(rexec().arg("cp").arg(&src).arg(dir.path("down")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read(dir.path("down").join(latin1)).unwrap(),
        b"top"
    );
    // A tree with such a name, up and down.
    let r = run(rexec()
        .args(["cp", "-r"])
        .arg(dir.path("tree"))
        .arg(format!("{}:{}", d.host(), dir.path("tree-up").display())));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read(dir.path("tree-up").join(latin1)).unwrap(),
        b"latin-1"
    );
    let r = run(rexec()
        .args(["cp", "-r"])
        .arg(format!("{}:{}", d.host(), dir.path("tree-up").display()))
        .arg(dir.path("tree-down")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        std::fs::read(dir.path("tree-down").join(latin1)).unwrap(),
        b"latin-1"
    );
}

/// Several sources go into a directory, as with cp and scp: onto a name
/// that does not exist there, or a file, they are refused with nothing
/// written (the last source used to end up under the new name, exit 0).
#[test]
fn several_sources_need_a_directory_and_nothing_is_written_otherwise() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cp-several");
    let (a, run_sh, tree) = (dir.path("a.txt"), dir.path("run.sh"), dir.path("tree"));
    std::fs::write(&a, "a\n").unwrap();
    std::fs::write(&run_sh, "echo run\n").unwrap();
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("in.txt"), "in\n").unwrap();
    let cp = |sources: &[&std::path::PathBuf], dest: &std::path::Path| {
        run(rexec().args(["cp", "-r"]).args(sources).arg(format!(
            "{}:{}",
            d.host(),
            dest.display()
        )))
    };
    let brandnew = dir.path("brandnew");
    let file = dir.path("file");
    std::fs::write(&file, "old\n").unwrap();
    for sources in [&[&a, &run_sh][..], &[&tree, &a][..], &[&a, &tree][..]] {
        for dest in [&brandnew, &file] {
            let r = cp(sources, dest);
            assert_eq!(r.code, Some(1), "{sources:?} {dest:?}: {}", r.stderr);
            assert!(
                r.stderr.contains("several sources go into a directory")
                    && r.stderr.contains("nothing was copied"),
                "{}",
                r.stderr
            );
            assert_eq!(r.stderr.lines().count(), 1, "one message: {}", r.stderr);
            assert!(!brandnew.exists(), "{sources:?} made {brandnew:?}");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "old\n");
        }
    }
    let into = dir.path("into");
    std::fs::create_dir(&into).unwrap();
    let r = cp(&[&a, &run_sh, &tree], &into);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(into.join("a.txt")).unwrap(), "a\n");
    assert_eq!(
        std::fs::read_to_string(into.join("run.sh")).unwrap(),
        "echo run\n"
    );
    assert_eq!(
        std::fs::read_to_string(into.join("tree/in.txt")).unwrap(),
        "in\n"
    );
    // One tree onto a new name is still made as that name, as cp -r does.
    let r = cp(&[&tree], &dir.path("copy"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(dir.path("copy/in.txt").exists());
}

/// The digest of `data` under `hash`.
fn digest_of(hash: Checksum, data: &[u8]) -> Vec<u8> {
    let mut h = hash.hasher();
    h.update(data);
    h.finalize().to_vec()
}

/// A raw connection that says it speaks `protocol`.
fn speaking(d: &Daemon, protocol: u16) -> TcpStream {
    let mut sock = TcpStream::connect(d.addr).unwrap();
    let hello = ClientMsg::Hello(ClientHello {
        protocol,
        software: "a client of another version".into(),
    });
    send(&mut sock, &hello);
    sock
}

#[test]
fn each_protocol_checks_copies_with_its_own_hash() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("cphash");
    // Protocol 8 and older: SHA-256; 9 on: BLAKE3. Each way, up and down.
    for (protocol, hash, other) in [
        (8, Checksum::Sha256, Checksum::Blake3),
        (9, Checksum::Blake3, Checksum::Sha256),
    ] {
        let target = dir.path(&format!("up{protocol}"));
        for (used, good) in [(other, false), (hash, true)] {
            let mut sock = speaking(&d, protocol);
            send(
                &mut sock,
                &ClientMsg::Put(Put {
                    id: 1,
                    dest: target.display().to_string().into_bytes(),
                    name: b"x".to_vec(),
                    size: 5,
                    ..Put::default()
                }),
            );
            let data = b"bytes".to_vec();
            send(
                &mut sock,
                &ClientMsg::Stdin {
                    id: 1,
                    data: data.clone(),
                },
            );
            let digest = digest_of(used, &data);
            send(&mut sock, &ClientMsg::PutEnd { id: 1, digest });
            let msgs = rexec_tests::wire::read_until(&mut sock, &mut FrameDecoder::new(), |m| {
                matches!(m, ServerMsg::Exited(_))
            });
            let ok = msgs
                .iter()
                .any(|m| matches!(m, ServerMsg::Exited(x) if x.status == ExitStatus::Code(0)));
            assert_eq!(ok, good, "protocol {protocol}, {}: {msgs:?}", used.name());
            assert_eq!(
                target.exists(),
                good,
                "protocol {protocol}, {}",
                used.name()
            );
        }
        // Down: the trailer is the digest under the protocol's hash.
        let mut sock = speaking(&d, protocol);
        send(
            &mut sock,
            &ClientMsg::Get {
                id: 2,
                path: target.display().to_string().into_bytes(),
            },
        );
        let msgs = rexec_tests::wire::read_until(&mut sock, &mut FrameDecoder::new(), |m| {
            matches!(m, ServerMsg::Exited(_))
        });
        let stream = rexec_tests::wire::stdout_of(&msgs);
        assert_eq!(stream.len(), GET_HEADER_LEN + 5 + DIGEST_LEN, "{msgs:?}");
        assert_eq!(&stream[GET_HEADER_LEN..GET_HEADER_LEN + 5], b"bytes");
        assert_eq!(stream[GET_HEADER_LEN + 5..], digest_of(hash, b"bytes")[..]);
        std::fs::remove_file(&target).unwrap();
    }
}
