use super::*;

#[test]
fn programs_are_found_through_path() {
    let sh = find_program("sh").expect("sh is in PATH");
    assert!(sh.is_absolute());
    assert!(find_program("/bin/../bin/sh").is_some());
    assert_eq!(find_program("no-such-program-xyz"), None);
    assert_eq!(find_program("/etc/passwd"), None, "not executable");
    assert_eq!(find_program(""), None);
}

#[test]
fn allow_list_matches_the_program_by_name() {
    let cfg = ExecPolicy {
        no_shell: true,
        allow: Some(vec![Allowed::lookup("echo").unwrap()]),
        ..ExecPolicy::default()
    };
    let exec = |c: &str| Exec {
        command: c.into(),
        ..Exec::default()
    };
    assert!(command_for(&exec("echo hi"), &cfg, &Grant::default()).is_ok());
    let e = command_for(&exec("/bin/../bin/rm -rf /tmp/x"), &cfg, &Grant::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // The same file under another name is another program: a link to
    // an allowed program, or the program's own path, is not the entry.
    let echo_path = find_program("echo").unwrap();
    let e = command_for(
        &exec(&format!("{} hi", echo_path.display())),
        &cfg,
        &Grant::default(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    // Shell mode is not a way around it: the whole string is split, no shell.
    let e = command_for(&exec("sh -c 'rm -rf /tmp/x'"), &cfg, &Grant::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
}

#[test]
fn without_a_shell_only_safe_variables_may_be_set() {
    let mut policy = ExecPolicy {
        no_shell: true,
        ..ExecPolicy::default()
    };
    let own = Grant::default();
    for ok in ["LANG", "LC_ALL", "LC_TIME", "TZ", "TERM"] {
        assert!(policy.env_allowed(ok, &own), "{ok}");
    }
    for bad in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "GCONV_PATH",
        "BASH_ENV",
        "PATH",
        "LANGX",
    ] {
        assert!(!policy.env_allowed(bad, &own), "{bad}");
    }
    policy.allow_env = vec!["MY_*".into(), "DEBUG".into()];
    assert!(policy.env_allowed("MY_SETTING", &own) && policy.env_allowed("DEBUG", &own));
    assert!(!policy.env_allowed("DEBUGX", &own));
    // With a shell the client can set anything in the command anyway.
    assert!(ExecPolicy::default().env_allowed("LD_PRELOAD", &own));
    // Logged in to an account (--login), as sshd's AcceptEnv: only the
    // safe ones and --allow-env's, shell or not.
    let login = Grant {
        account: Some(std::sync::Arc::new(RunAs {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![],
            home: "/home/alice".into(),
            shell: "/bin/sh".into(),
        })),
        ..Grant::default()
    };
    policy.no_shell = false;
    assert!(!policy.env_allowed("LD_PRELOAD", &login));
    assert!(!policy.env_allowed("HISTFILE", &login));
    assert!(policy.env_allowed("LANG", &login) && policy.env_allowed("MY_X", &login));
}
