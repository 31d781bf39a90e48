//! TLS over loopback with the real binaries: handshake and commands, large
//! output intact, trust on first use, pinning, known-hosts mismatch, CA
//! certificates, transport mismatches in both directions, hostile bytes,
//! token authentication inside TLS.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rexec_tests::*;

fn tls_daemon(dir: &TempDir, extra: &[&str]) -> Daemon {
    let state = dir.path("state").display().to_string();
    let mut args = vec!["--tls", "--state-dir", &state];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

/// rexec with its own known-hosts file.
fn client(kh: &Path) -> Command {
    let mut c = rexec();
    c.env("REXEC_KNOWN_HOSTS", kh).env_remove("REXEC_TLS");
    c
}

#[test]
fn commands_and_large_output_over_tls() {
    let dir = TempDir::new("basic");
    let d = tls_daemon(&dir, &[]);
    let kh = dir.path("known_hosts");
    let r = run(client(&kh)
        .arg("--accept-new")
        .arg(d.host())
        .arg("echo over tls; echo err >&2; exit 3"));
    assert_eq!(
        (r.code, r.out().as_str()),
        (Some(3), "over tls\n"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("err\n"));
    let fp = d.fingerprint.clone().unwrap();
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(recorded.trim(), format!("{} {fp}", d.host()));
    // 64 MiB, the host now known (TLS without any flag: no downgrade).
    let r = run_for(
        client(&kh).arg(d.host()).arg("head -c 67108864 /dev/zero"),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.len(), 64 << 20);
    assert!(r.stdout.iter().all(|&b| b == 0));
}

#[test]
fn binary_output_over_tls_matches_the_servers_hash() {
    let dir = TempDir::new("hash");
    let d = tls_daemon(&dir, &[]);
    let kh = dir.path("kh");
    let file = dir.path("data");
    let mut x: u64 = 88172645463325252;
    let data: Vec<u8> = (0..(16 << 20) / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(&file, &data).unwrap();
    let r = run_for(
        client(&kh)
            .arg("--accept-new")
            .arg(d.host())
            .arg(format!("cat {}", file.display())),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout == data, "16 MiB of binary output differs");
}

#[test]
fn unknown_hosts_are_refused_without_a_terminal_or_accept_new() {
    let dir = TempDir::new("tofu");
    let d = tls_daemon(&dir, &[]);
    let kh = dir.path("kh");
    let r = run(client(&kh)
        .arg("--tls")
        .arg(d.host())
        .arg("echo should-not-run"));
    assert_eq!(r.code, Some(255));
    let fp = d.fingerprint.clone().unwrap();
    assert!(
        r.stderr.contains("not a known host") && r.stderr.contains(&fp),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    assert!(!kh.exists(), "nothing recorded");
}

#[test]
fn fingerprint_pinning_accepts_and_refuses() {
    let dir = TempDir::new("pin");
    let d = tls_daemon(&dir, &[]);
    let kh = dir.path("kh");
    let fp = d.fingerprint.clone().unwrap();
    let r = run(client(&kh)
        .args(["--fingerprint", &fp])
        .arg(d.host())
        .arg("echo pinned"));
    assert_eq!(r.out(), "pinned\n", "{}", r.stderr);
    let wrong = format!("SHA256:{}", "0".repeat(64));
    let r = run(client(&kh)
        .args(["--fingerprint", &wrong])
        .arg(d.host())
        .arg("echo no"));
    assert_eq!(r.code, Some(255));
    assert!(r.stderr.contains("not the one pinned"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
}

#[test]
fn a_changed_certificate_is_refused_loudly() {
    let dir = TempDir::new("changed");
    let d = tls_daemon(&dir, &[]);
    let kh = dir.path("kh");
    let other = format!("SHA256:{}", "ab".repeat(32));
    std::fs::write(
        &kh,
        format!(
            "lab9:7070 SHA256:{}\n{} {other}\n",
            "cd".repeat(32),
            d.host()
        ),
    )
    .unwrap();
    // Known host: TLS is used without asking for it, and the mismatch is refused.
    let r = run(client(&kh).arg("--accept-new").arg(d.host()).arg("echo no"));
    assert_eq!(r.code, Some(255));
    assert!(r.stderr.contains("HAS CHANGED"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("remove line 2 of {}", kh.display())),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn the_self_signed_identity_survives_a_restart() {
    let dir = TempDir::new("restart");
    let fp1 = tls_daemon(&dir, &[]).fingerprint.clone().unwrap();
    let fp2 = tls_daemon(&dir, &[]).fingerprint.clone().unwrap();
    assert_eq!(fp1, fp2);
}

#[test]
fn ca_signed_certificates_are_checked_against_the_ca_file() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = TempDir::new("ca");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rexec test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "rexecd test");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(dir.path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.path("key.pem"), leaf_key.serialize_pem()).unwrap();
    // rexecd refuses a key others can read.
    std::fs::set_permissions(
        dir.path("key.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // Another CA, which did not sign it.
    let other_key = KeyPair::generate().unwrap();
    let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    other
        .distinguished_name
        .push(DnType::CommonName, "another CA");
    std::fs::write(
        dir.path("other.pem"),
        other.self_signed(&other_key).unwrap().pem(),
    )
    .unwrap();

    let (cert, key) = (
        dir.path("cert.pem").display().to_string(),
        dir.path("key.pem").display().to_string(),
    );
    let d = Daemon::start(&["--cert", &cert, "--key", &key]);
    let kh = dir.path("kh");
    let r = run(client(&kh)
        .arg("--ca")
        .arg(dir.path("ca.pem"))
        .arg(d.host())
        .arg("echo ca-ok"));
    assert_eq!(r.out(), "ca-ok\n", "{}", r.stderr);
    let r = run(client(&kh)
        .arg("--ca")
        .arg(dir.path("other.pem"))
        .arg(d.host())
        .arg("echo no"));
    assert_eq!(r.code, Some(255));
    assert!(
        r.stderr.contains("TLS handshake") && r.stderr.to_lowercase().contains("unknown"),
        "{}",
        r.stderr
    );
}

#[test]
fn transport_mismatches_fail_fast_with_a_clear_message() {
    let dir = TempDir::new("mismatch");
    // The servers would wait an hour for a handshake: a client that does
    // not see the mismatch at once hangs, and `run` fails the test.
    let tls = tls_daemon(&dir, &["--handshake-timeout", "3600"]);
    let plain = Daemon::start(&["--handshake-timeout", "3600"]);
    let kh = dir.path("kh");
    // Plaintext client, TLS server.
    let r = run(client(&kh).arg(tls.host()).arg("true"));
    assert_eq!(r.code, Some(255));
    assert!(
        r.stderr.contains("speaks TLS") && r.stderr.contains("--tls"),
        "{}",
        r.stderr
    );
    // TLS client, plaintext server.
    let r = run(client(&kh)
        .arg("--tls")
        .arg("--accept-new")
        .arg(plain.host())
        .arg("true"));
    assert_eq!(r.code, Some(255));
    assert!(
        r.stderr.contains("speaks plaintext") && r.stderr.contains("without --tls"),
        "{}",
        r.stderr
    );
}

#[test]
fn hostile_bytes_before_the_handshake() {
    let dir = TempDir::new("hostile");
    let mut d = tls_daemon(&dir, &[]);
    let exchange = |junk: &[u8]| {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.write_all(junk).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut buf);
        buf
    };
    // A fake handshake record with junk inside, and one with a huge length:
    // at most a TLS alert comes back, then the connection closes.
    for junk in [
        &[0x16u8, 3, 1, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10][..],
        &[0x16, 3, 3, 0xff, 0xff, 0][..],
    ] {
        let buf = exchange(junk);
        assert!(
            buf.len() <= 7 && buf.first().is_none_or(|&b| b == 0x15),
            "{buf:?}"
        );
    }
    // Not a handshake at all: the plaintext error a lost plaintext client needs.
    let buf = exchange(&[0x17; 64]);
    let mut dec = rexec_proto::FrameDecoder::new();
    dec.feed(&buf);
    match dec.next_message::<rexec_proto::ServerMsg>() {
        Ok(Some(rexec_proto::ServerMsg::Error(e))) => {
            assert!(e.message.contains("speaks TLS"), "{}", e.message)
        }
        other => panic!("{other:?}"),
    }
    assert!(d.child.try_wait().unwrap().is_none(), "rexecd died");
    let kh = dir.path("kh");
    let r = run(client(&kh)
        .arg("--accept-new")
        .arg(d.host())
        .arg("echo alive"));
    assert_eq!(r.out(), "alive\n", "{}", r.stderr);
}

#[test]
fn token_authentication_inside_tls() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("token");
    let tf = dir.path("token");
    std::fs::write(&tf, "tls-secret\n").unwrap();
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tfs = tf.display().to_string();
    let d = tls_daemon(&dir, &["--token-file", &tfs]);
    let kh = dir.path("kh");
    let r = run(client(&kh)
        .arg("--accept-new")
        .env("REXEC_TOKEN", "tls-secret")
        .arg(d.host())
        .arg("echo authed"));
    assert_eq!(r.out(), "authed\n", "{}", r.stderr);
    let r = run(client(&kh)
        .env("REXEC_TOKEN", "wrong")
        .arg(d.host())
        .arg("echo no"));
    assert_eq!(r.code, Some(255));
    assert!(r.stderr.contains("auth failed"), "{}", r.stderr);
}

#[test]
fn non_loopback_plaintext_needs_insecure_even_with_a_token() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("insecure");
    let tf = dir.path("token");
    std::fs::write(&tf, "t\n").unwrap();
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Refused before anything is bound.
    let r = run(Command::new(bin("rexecd"))
        .args(["--listen", "0.0.0.0:0", "--token-file"])
        .arg(&tf));
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("TLS (--tls)") && r.stderr.contains("--insecure"),
        "{}",
        r.stderr
    );
}

#[test]
fn rexec_tls_in_the_environment_turns_tls_on_and_off() {
    let dir = TempDir::new("env");
    let plain = Daemon::start(&[]);
    let kh = dir.path("kh");
    // On: the client starts TLS, which the plaintext server names.
    for on in ["1", "yes", "true"] {
        let r = run(client(&kh)
            .env("REXEC_TLS", on)
            .arg(plain.host())
            .arg("true"));
        assert_eq!(r.code, Some(255), "REXEC_TLS={on}");
        assert!(
            r.stderr.contains("started TLS"),
            "REXEC_TLS={on}: {}",
            r.stderr
        );
    }
    for off in ["0", "no", "false"] {
        let r = run(client(&kh)
            .env("REXEC_TLS", off)
            .arg(plain.host())
            .args(["echo", "plain"]));
        assert_eq!(
            (r.code, r.out()),
            (Some(0), "plain\n".into()),
            "REXEC_TLS={off}: {}",
            r.stderr
        );
    }
    let r = run(client(&kh)
        .env("REXEC_TLS", "maybe")
        .arg(plain.host())
        .arg("true"));
    assert_eq!(
        r.code,
        Some(2),
        "a value that is not yes or no is a usage error"
    );
    assert!(r.stderr.contains("--tls"), "{}", r.stderr);
}

#[test]
fn a_verified_fingerprint_is_remembered_and_forget_removes_it() {
    let dir = TempDir::new("remember");
    let d = tls_daemon(&dir, &[]);
    let kh = dir.path("kh");
    let fp = d.fingerprint.clone().unwrap();
    // Given without the SHA256: prefix and in upper case: the same pin.
    let bare = fp.trim_start_matches("SHA256:").to_ascii_uppercase();
    let r = run(client(&kh)
        .args(["--fingerprint", &bare])
        .arg(d.host())
        .arg("echo first"));
    assert_eq!(r.out(), "first\n", "{}", r.stderr);
    assert!(r.stderr.contains("added"), "{}", r.stderr);
    // The README's next step: no flags, TLS because the host is known.
    let r = run(client(&kh).arg(d.host()).arg("echo later"));
    assert_eq!(r.out(), "later\n", "{}", r.stderr);
    // Forgotten: a plain connection again, which the TLS server refuses.
    let r = run(client(&kh).args(["forget", &d.host()]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("removed"), "{}", r.stderr);
    let r = run(client(&kh).arg(d.host()).arg("true"));
    assert_eq!(r.code, Some(255));
    assert!(r.stderr.contains("speaks TLS"), "{}", r.stderr);
    let r = run(client(&kh).args(["forget", &d.host()]));
    assert_eq!(r.code, Some(1), "nothing left to forget: {}", r.stderr);
}
