use std::os::unix::fs::PermissionsExt;

use super::*;

fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    f
}

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("rexecd")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

#[test]
fn lines_are_counted_from_one() {
    assert_eq!(line_of("a\nb\nc", 0), 1);
    assert_eq!(line_of("a\nb\nc", 2), 2);
    assert_eq!(line_of("a\nb\nc", 4), 3);
    assert_eq!(line_of("a", 99), 1);
}

#[test]
fn printed_strings_are_toml_strings() {
    assert_eq!(toml_str("plain"), "\"plain\"");
    assert_eq!(toml_str("a\"b\\c\u{1b}"), "\"a\\\"b\\\\c\\u001B\"");
    let parsed = DeTable::parse("k = \"a\\\"b\\\\c\\u001B\"").unwrap();
    let v = parsed
        .get_ref()
        .iter()
        .next()
        .unwrap()
        .1
        .get_ref()
        .as_str()
        .map(str::to_string);
    assert_eq!(v.as_deref(), Some("a\"b\\c\u{1b}"));
}

#[test]
fn the_file_stands_for_flags_and_the_command_line_wins() {
    let f = file(
        "timeout = 1_000\nno-shell = true\ninsecure = false\nallow = [\"echo\", \"cat\"]\nmax-procs = 5\n",
        0o600,
    );
    let path = f.path().to_str().unwrap();
    let loaded = load(&argv(&["--config", path, "--max-procs", "9"])).unwrap();
    assert_eq!(loaded.args.timeout, 1000);
    assert!(loaded.args.no_shell);
    assert!(!loaded.args.insecure);
    assert_eq!(
        loaded.args.allow,
        Some(vec!["echo".to_string(), "cat".to_string()])
    );
    assert_eq!(loaded.args.max_procs, 9);
    let shown = loaded.describe();
    assert!(
        shown.contains(&format!("timeout = 1000  # {path}:1\n")),
        "{shown}"
    );
    assert!(shown.contains("max-procs = 9  # command line\n"), "{shown}");
}

#[test]
fn numbers_are_decimal_and_values_have_a_type() {
    for (text, why) in [
        ("timeout = 0x10\n", "decimal"),
        ("timeout = 1.5\n", "not float"),
        ("no-shell = 1\n", "a switch"),
        ("listen = { a = 1 }\n", "not table"),
    ] {
        let f = file(text, 0o600);
        let e = load(&argv(&["--config", f.path().to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains(why), "{text:?}: {e}");
    }
}

#[test]
fn a_file_others_may_change_is_refused() {
    let f = file("timeout = 1\n", 0o620);
    let e = load(&argv(&["--config", f.path().to_str().unwrap()])).unwrap_err();
    assert!(e.to_string().contains("writable by group or others"), "{e}");
}
