//! How rexecd's log lines look: for a terminal, for the journal, or as
//! JSON.
//!
//! - On a terminal or into a file: `[TIME LEVEL target] message`, as
//!   env_logger writes it.
//! - Under systemd (`JOURNAL_STREAM` names the very stream stderr is), the
//!   journal stamps each line with its own time, so rexecd writes none, and
//!   puts the level first as `<N>` (sd-daemon(3)): `journalctl -p warning`
//!   then finds rexecd's warnings.
//! - `--log-format json`: one JSON object per line, with `time`, `level`,
//!   `target` and `message`, and the fields of the audit lines (`event`,
//!   `peer`, `account`, `command`, `status`...) as their own keys, for a
//!   log collector to search without parsing the message.
//!
//! RUST_LOG still chooses what is logged (`info` by default).

use std::io::Write;

use clap::ValueEnum;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines of text (without timestamps under the journal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up the logger for `format`. Call once, at start.
pub fn init(format: LogFormat) {
    let journal = stderr_is_journal();
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    b.format(move |buf, record| {
        let line = match format {
            LogFormat::Json => json_line(&buf.timestamp_millis().to_string(), record, journal),
            LogFormat::Text if journal => format!(
                "<{}>{}: {}",
                priority(record.level()),
                record.target(),
                record.args()
            ),
            LogFormat::Text => format!(
                "[{} {:<5} {}] {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            ),
        };
        writeln!(buf, "{line}")
    });
    b.init();
}

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM`
/// to its `DEVICE:INODE`, and a stderr redirected elsewhere (by a script
/// under the unit) is not it.
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    is_stream(&var.to_string_lossy(), st.st_dev, st.st_ino)
}

/// Whether `DEVICE:INODE` names the file `dev`, `ino`.
fn is_stream(var: &str, dev: u64, ino: u64) -> bool {
    match var.split_once(':') {
        Some((d, i)) => d.parse() == Ok(dev) && i.parse() == Ok(ino),
        None => false,
    }
}

/// The syslog priority of a level, as sd-daemon(3) prefixes take it.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// One record as a JSON object; the journal adds the time itself.
fn json_line(time: &str, record: &log::Record<'_>, journal: bool) -> String {
    let mut obj = serde_json::Map::new();
    if !journal {
        obj.insert("time".into(), time.into());
    }
    obj.insert(
        "level".into(),
        record.level().as_str().to_lowercase().into(),
    );
    obj.insert("target".into(), record.target().into());
    obj.insert("message".into(), record.args().to_string().into());
    let mut fields = Fields(&mut obj);
    let _ = record.key_values().visit(&mut fields);
    let line = serde_json::Value::Object(obj).to_string();
    match journal {
        true => format!("<{}>{line}", priority(record.level())),
        false => line,
    }
}

/// Copies a record's key-value pairs into a JSON object: numbers as
/// numbers, the rest as strings.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let v = match (value.to_u64(), value.to_i64()) {
            (Some(n), _) => n.into(),
            (None, Some(n)) => n.into(),
            _ => value.to_string().into(),
        };
        self.0.insert(key.as_str().to_string(), v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_known_by_device_and_inode() {
        assert!(is_stream("8:1234", 8, 1234));
        assert!(!is_stream("8:1234", 8, 1235));
        assert!(!is_stream("8:1234", 9, 1234));
        assert!(!is_stream("garbage", 8, 1234));
    }

    #[test]
    fn levels_become_syslog_priorities() {
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Warn), 4);
        assert_eq!(priority(log::Level::Info), 6);
        assert_eq!(priority(log::Level::Debug), 7);
    }

    #[test]
    fn a_json_line_carries_the_fields_as_keys() {
        let kvs: &[(&str, log::kv::Value<'_>)] = &[
            ("event", log::kv::Value::from("command")),
            ("status", log::kv::Value::from(3u64)),
            ("command", log::kv::Value::from("echo \"hi\"\n")),
        ];
        let args = format_args!("ran it");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("audit")
            .key_values(&kvs)
            .build();
        let line = json_line("T", &record, false);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "T");
        assert_eq!(v["level"], "info");
        assert_eq!(v["target"], "audit");
        assert_eq!(v["message"], "ran it");
        assert_eq!(v["event"], "command");
        assert_eq!(v["status"], 3);
        assert_eq!(v["command"], "echo \"hi\"\n");
        // Under the journal: no time of ours, the priority first.
        let line = json_line("T", &record, true);
        assert!(line.starts_with("<6>{"), "{line}");
        assert!(!line.contains("\"time\""), "{line}");
    }
}
