//! Progress on a terminal, as scp shows it: a bar for one copy (`rexec
//! cp`), one line for a whole sync, each left as a last line that says
//! what was done; nothing when stderr is no terminal.

use super::*;

pub(super) fn progress(args: &CpArgs, label: &str, size: u64) -> indicatif::ProgressBar {
    progress_bar(!args.quiet, label, size)
}

/// A progress bar of `size` bytes on stderr when it is a terminal (and
/// `show`), else a hidden one.
pub(super) fn progress_bar(show: bool, label: &str, size: u64) -> indicatif::ProgressBar {
    if !show || !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}

/// Ends a progress bar as scp does: a last line that stays, with the name,
/// size, rate and time of the copy (nothing when stderr is no terminal).
pub(super) fn progress_done(bar: &indicatif::ProgressBar, ok: bool) {
    if bar.is_hidden() {
        return;
    }
    if !ok {
        return bar.abandon();
    }
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} 100% {total_bytes} {bytes_per_sec} {elapsed_precise}",
    ) {
        bar.set_style(style);
    }
    bar.finish();
}

/// The one progress line of a sync on a terminal (not with `-w` or `-n`):
/// files and bytes sent so far, left as a last line like `rexec cp`'s.
/// Up, the files to send are known first; down, each is decided as it
/// comes, so the line counts without a total.
pub(super) struct Progress {
    bar: indicatif::ProgressBar,
    /// What the line starts with: the command (`sync`, `cp`).
    label: &'static str,
    /// Put before each line said above it (`lab3: ` with `-w`).
    prefix: String,
    /// The files to send, when known.
    files: Option<u64>,
    done: std::cell::Cell<u64>,
}

impl Progress {
    /// For `files` files of `bytes` bytes in all.
    pub(super) fn new(show: bool, files: u64, bytes: u64) -> Progress {
        let p = Progress {
            bar: progress_bar(show && files > 0, "", bytes),
            label: "sync",
            prefix: String::new(),
            files: Some(files),
            done: std::cell::Cell::new(0),
        };
        p.tell();
        p
    }

    /// For files not known yet.
    pub(super) fn open_ended(show: bool) -> Progress {
        let bar = progress_bar(show, "", 0);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bytes} {bytes_per_sec}")
        {
            bar.set_style(style);
        }
        let p = Progress {
            bar,
            label: "sync",
            prefix: String::new(),
            files: None,
            done: std::cell::Cell::new(0),
        };
        p.tell();
        p
    }

    /// The same, for command `label`, its lines said with `prefix`.
    pub(super) fn labelled(mut self, label: &'static str, prefix: &str) -> Progress {
        self.label = label;
        self.prefix = prefix.to_string();
        self.tell();
        self
    }

    fn tell(&self) {
        let (label, done) = (self.label, self.done.get());
        self.bar.set_message(match self.files {
            Some(all) => format!("{label} {done}/{all} files"),
            None => format!("{label} {done} files"),
        });
    }

    /// One more file sent, of `bytes` bytes.
    pub(super) fn sent(&self, bytes: u64) {
        self.done.set(self.done.get() + 1);
        self.bar
            .inc_length(if self.files.is_none() { bytes } else { 0 });
        self.bar.inc(bytes);
        self.tell();
    }

    /// A line on stderr, above the progress line.
    pub(super) fn say(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{}{line}", self.prefix));
    }

    /// The last line, which stays.
    pub(super) fn finish(&self) {
        self.bar
            .set_message(format!("{} {} files", self.label, self.done.get()));
        progress_done(&self.bar, true);
    }
}

impl Drop for Progress {
    /// Ended early (an error): the line stays as it was.
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}
