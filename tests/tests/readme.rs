//! The README's examples stay true: the Quick start is exactly the two
//! commands a fresh machine runs, and every option an example gives to
//! `rexec` or `rexecd` (README.md, docs/TEACHING.md) is one their `--help`
//! knows, for the subcommand it is given to.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use rexec_tests::*;

fn doc(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of every ```sh block of `text`.
fn shell_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("```") {
            inside = line == "```sh";
            continue;
        }
        if inside {
            lines.push(line.to_string());
        }
    }
    lines
}

/// The `rexec`/`rexecd` invocations on a shell line (after `|`, `&&`, `;`
/// too): the program, and its words up to the end of that command.
fn invocations(line: &str) -> Vec<(String, Vec<String>)> {
    let code = line.split(" # ").next().unwrap_or("");
    let mut found = Vec::new();
    for part in code.split(['|', ';', '&']) {
        let words: Vec<&str> = part.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| {
            let name = w.rsplit('/').next().unwrap_or(w);
            name == "rexec" || name == "rexecd"
        }) else {
            continue;
        };
        let program = words[at].rsplit('/').next().unwrap_or("").to_string();
        let rest = words[at + 1..].iter().map(|w| w.to_string()).collect();
        found.push((program, rest));
    }
    found
}

/// What `PROGRAM [SUB] --help` says.
fn help(program: &str, sub: Option<&str>) -> String {
    let out = Command::new(bin(program))
        .args(sub)
        .arg("--help")
        .output()
        .expect("--help");
    assert!(out.status.success(), "{program} {sub:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_quick_start_is_the_two_commands() {
    let readme = doc("README.md");
    let start = readme.find("## Quick start").expect("a Quick start");
    let block = shell_lines(&readme[start..]);
    assert_eq!(
        block.iter().take(2).cloned().collect::<Vec<_>>(),
        ["cargo run --bin rexec -- demo", "cargo test --workspace"]
    );
    let first_block = &readme[start..];
    let end = first_block[3..].find("```\n").expect("its end");
    assert_eq!(
        first_block[..end + 3].matches('\n').count(),
        5,
        "exactly two commands in the Quick start's block"
    );
}

#[test]
fn every_option_in_the_examples_is_one_the_program_knows() {
    let subcommands = [
        "cp",
        "sync",
        "hosts",
        "completions",
        "man",
        "jobs",
        "attach",
        "kill",
        "forget",
        "demo",
    ];
    let mut checked = BTreeSet::new();
    let mut unknown = Vec::new();
    for file in ["README.md", "docs/TEACHING.md"] {
        for line in shell_lines(&doc(file)) {
            for (program, words) in invocations(&line) {
                let sub = (program == "rexec")
                    .then(|| words.iter().find(|w| !w.starts_with('-')))
                    .flatten()
                    .filter(|w| subcommands.contains(&w.as_str()))
                    .cloned();
                let text = help(&program, sub.as_deref());
                for w in words.iter().filter(|w| w.starts_with("--") && w.len() > 2) {
                    let flag = w.split('=').next().unwrap_or(w);
                    checked.insert(format!("{program} {flag}"));
                    if !text.contains(flag) {
                        unknown.push(format!(
                            "{file}: {program} {}: {flag}",
                            sub.as_deref().unwrap_or("")
                        ));
                    }
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "options the programs do not know: {unknown:#?}"
    );
    assert!(checked.len() > 10, "the examples were read: {checked:?}");
}

/// docs/ARCHITECTURE.md names every source file of the server and the
/// client (its table was 22 files short of the server's 58).
#[test]
fn the_architecture_names_every_source_file() {
    let mut missing = Vec::new();
    for crate_dir in ["server", "client"] {
        missing.extend(unlisted(crate_dir));
    }
    assert!(
        missing.is_empty(),
        "not in docs/ARCHITECTURE.md: {missing:?}"
    );
}

/// The files of `crate_dir`/src that docs/ARCHITECTURE.md does not name.
fn unlisted(crate_dir: &str) -> Vec<String> {
    let text = doc("docs/ARCHITECTURE.md");
    let mut missing = Vec::new();
    for (rel, _) in source_files(crate_dir) {
        let name = rel.rsplit('/').next().unwrap_or("");
        if name == "tests.rs" {
            continue; // unit tests beside the module they test
        }
        // `server/keys.rs` by its path; a file alone in its name by it.
        let named = text.contains(&format!("`{rel}`"))
            || (!rel.contains('/') && text.contains(&format!("`{name}`")))
            || text.contains(&format!("`{name}`"))
                && text.contains(&format!("`{}/`", rel.split('/').next().unwrap_or("")));
        if !named {
            missing.push(format!("{crate_dir}/src/{rel}"));
        }
    }
    missing.sort();
    missing
}

/// The router's rooms (server/src/server.rs and server/src/server/) call
/// only downwards: no room calls a method defined in a room that (through
/// others) calls it back. They were one circle of 14 files and 43 calls.
/// A call is `self.NAME(` in one file of a method `fn NAME` defined in
/// another; test modules are left out.
#[test]
fn the_routers_rooms_call_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let mut files = vec![root.join("server.rs")];
    for e in std::fs::read_dir(root.join("server"))
        .expect("server/src/server")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "rs") {
            files.push(e.path());
        }
    }
    let code = |p: &Path| {
        let text = std::fs::read_to_string(p).expect("a room");
        without_tests(&text)
    };
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    // Method name -> the rooms that define it.
    let mut defined: std::collections::HashMap<String, BTreeSet<String>> = Default::default();
    for p in &files {
        for m in words_after(&code(p), "fn ") {
            defined.entry(m).or_default().insert(name(p));
        }
    }
    let mut calls: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for p in &files {
        let from = name(p);
        let text = code(p);
        for m in words_after(&text, "self.") {
            if !text.contains(&format!("self.{m}(")) {
                continue;
            }
            for to in defined.get(&m).into_iter().flatten() {
                if *to != from {
                    calls.entry(from.clone()).or_default().insert(to.clone());
                }
            }
        }
    }
    let circle = first_circle(&calls);
    assert!(circle.is_none(), "rooms that call each other: {circle:?}");
}

/// No crate's modules use each other in a circle: a module is a file of
/// src/ (with the directory of its submodules), and it uses another when
/// its code outside tests names `crate::OTHER`, alone or in a
/// `crate::{..}` group. The server's connection, auth and process were one
/// (a process pumped into a `Connection`; it now pumps into a `Sink`).
#[test]
fn no_modules_use_each_other_in_a_circle() {
    for krate in ["proto", "server", "client"] {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(krate)
            .join("src");
        let top: BTreeSet<String> = std::fs::read_dir(&src)
            .expect("src")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".rs").map(str::to_string)
            })
            .filter(|m| !["lib", "main", "tests"].contains(&m.as_str()))
            .collect();
        let mut uses: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
        for (rel, path) in source_files(krate) {
            let module = rel
                .split('/')
                .next()
                .unwrap_or("")
                .trim_end_matches(".rs")
                .to_string();
            if !top.contains(&module) || rel.ends_with("tests.rs") || rel.contains("/tests/") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let code = &without_tests(&text);
            let mut named = words_after(code, "crate::");
            for (i, _) in code.match_indices("crate::{") {
                let group = &code[i + 8..];
                let group = &group[..group.find('}').unwrap_or(group.len())];
                named.extend(group.split(',').map(|w| {
                    w.trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect()
                }));
            }
            for other in named
                .into_iter()
                .filter(|m| top.contains(m) && *m != module)
            {
                uses.entry(module.clone()).or_default().insert(other);
            }
        }
        assert!(
            uses.values().map(BTreeSet::len).sum::<usize>() > 0 || krate == "proto",
            "{krate}: no uses found; is the test reading the right files?"
        );
        let circle = first_circle(&uses);
        assert!(
            circle.is_none(),
            "{krate}: modules that use each other: {circle:?}"
        );
    }
}

/// The server reads the clock in three places outside its helper processes
/// and its tests: the start's monotonic and wall readings, and once per
/// loop turn (`Server::now`, passed to everything that decides). It read
/// it about 60 times, so nothing could be tested at a chosen time. An
/// `elapsed()` reads the clock too.
#[test]
fn the_server_reads_the_clock_at_most_three_times() {
    let mut reads = Vec::new();
    for (rel, path) in source_files("server") {
        if rel.starts_with("helpers") || rel.ends_with("tests.rs") || rel.contains("tests/") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        let code = without_tests(&text);
        for (no, line) in code.lines().enumerate() {
            let read = ["Instant::now(", "SystemTime::now(", ".elapsed()"]
                .iter()
                .any(|r| line.contains(r));
            if read && !line.trim_start().starts_with("//") {
                reads.push(format!("{rel}:{}", no + 1));
            }
        }
    }
    assert!(
        reads.len() <= 3,
        "the clock read in {} places: {reads:?}",
        reads.len()
    );
    assert!(
        reads.iter().any(|r| r.starts_with("server.rs")),
        "the loop's own reading not found: is the test reading server/src?"
    );
}

/// `text` without its test-only items: each `#[cfg(test)]` and the item
/// after it, one line (`mod tests;`) or a braced block (a function, a
/// module, an impl), wherever it stands in the file. What is left out
/// becomes empty lines: the rest keeps its line numbers.
fn without_tests(text: &str) -> String {
    let mut kept = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            kept.push_str(line);
            kept.push('\n');
            continue;
        }
        kept.push('\n');
        let mut depth = 0i64;
        let mut opened = false;
        for item in lines.by_ref() {
            kept.push('\n');
            depth += item.matches('{').count() as i64 - item.matches('}').count() as i64;
            opened |= item.contains('{');
            let attribute = item.trim_start().starts_with("#[");
            if !attribute && ((opened && depth <= 0) || (!opened && item.trim_end().ends_with(';')))
            {
                break;
            }
        }
    }
    kept
}

/// The `.rs` files below `krate`/src: each path relative to src, and in
/// full.
fn source_files(krate: &str) -> Vec<(String, std::path::PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    let mut found = Vec::new();
    let mut todo = vec![src.clone()];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            todo.extend(
                std::fs::read_dir(&path)
                    .expect("a source directory")
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if path.extension().is_some_and(|x| x == "rs") {
            let rel = path.strip_prefix(&src).expect("below src");
            found.push((rel.to_string_lossy().into_owned(), path));
        }
    }
    found
}

/// The identifiers that follow `prefix` in `text`.
fn words_after(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// A circle in `graph`, if there is one (a path that comes back to its
/// start).
fn first_circle(
    graph: &std::collections::BTreeMap<String, BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn walk(
        graph: &std::collections::BTreeMap<String, BTreeSet<String>>,
        at: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            return Some(path[i..].to_vec());
        }
        if !done.insert(at.to_string()) {
            return None;
        }
        path.push(at.to_string());
        for next in graph.get(at).into_iter().flatten() {
            if let Some(c) = walk(graph, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| walk(graph, start, &mut Vec::new(), &mut done))
}
