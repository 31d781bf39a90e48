use super::*;
use std::os::unix::fs::PermissionsExt;

/// A check of the Ed25519 key whose seed is 32 bytes of 1, for `user` on
/// connection `conn` (its key number too), from 127.0.0.1.
pub(super) fn check_for(conn: u64, user: &str) -> Check {
    let key = ssh_key::PrivateKey::new(
        ssh_key::private::KeypairData::Ed25519(ssh_key::private::Ed25519Keypair::from_seed(
            &[1; 32],
        )),
        "",
    )
    .unwrap()
    .public_key()
    .clone();
    Check {
        conn: ConnId(conn),
        seq: conn,
        user: user.into(),
        key,
        peer: IpAddr::from([127, 0, 0, 1]),
        wall: SystemTime::now(),
    }
}

#[test]
fn names_no_account_can_have_are_not_looked_up() {
    for user in [
        String::new(),
        "a/b".into(),
        "a\0b".into(),
        "x".repeat(MAX_NAME + 1),
    ] {
        let e = check(&check_for(1, &user), false, SystemTime::now()).unwrap_err();
        assert_eq!(e, "not an account name");
    }
}

#[test]
fn strict_modes_refuse_files_and_directories_others_may_write() {
    let me = rustix::process::getuid().as_raw();
    let dir = tempfile::tempdir().unwrap();
    // The temp directory's parents (/tmp is world-writable) are above
    // "home", so only home, .ssh and the file are looked at.
    let home = dir.path().join("home");
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let file = ssh.join("authorized_keys");
    std::fs::write(&file, "ssh-ed25519 AAAA\n").unwrap();
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(&home, 0o755);
    set(&ssh, 0o700);
    set(&file, 0o600);
    assert_eq!(read_strict(&file, me, &home).unwrap(), "ssh-ed25519 AAAA\n");
    for (p, loose) in [(&file, 0o620), (&ssh, 0o777), (&home, 0o775)] {
        let before = std::fs::metadata(p).unwrap().mode() & 0o777;
        set(p, loose);
        let e = read_strict(&file, me, &home).unwrap_err();
        assert!(e.contains("bad modes") && e.contains("chmod go-w"), "{e}");
        set(p, before);
    }
    // Owned by another account (not root, not the user).
    let other = if me == 0 { 4242 } else { me + 1 };
    if me == 0 {
        std::os::unix::fs::chown(&ssh, Some(other), None).unwrap();
        let e = read_strict(&file, me, &home).unwrap_err();
        assert!(e.contains("bad ownership"), "{e}");
    }
    let e = read_strict(&ssh.join("none"), me, &home).unwrap_err();
    assert!(e.contains("No such file"), "{e}");
}
