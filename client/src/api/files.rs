//! Copies and detached jobs for the library. A copy drives its
//! connection alone (its requests and answers in turn), so each opens one
//! of its own, the same way the client connected; jobs are requests on
//! the client's connection, like commands.

use std::path::Path;

use rexec_proto::{ClientMsg, Exec, JobVerb};

use super::{Client, Error, Output};
use crate::session::Session;

/// How a copy goes: a file, or a directory and all below it; with or
/// without its mode and modification time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Copy a directory and what is in it (`rexec cp -r`).
    pub recursive: bool,
    /// Keep mode and modification time (`rexec cp -p`).
    pub preserve: bool,
}

impl Client {
    fn copy_session(&self) -> Result<Session, Error> {
        let inner = &self.inner;
        Session::connect(&inner.addr, &inner.opts).map_err(|e| Error::from_client(&inner.addr, e))
    }

    /// Sends the local file `local` to `remote` on the server (a file
    /// name, or an existing directory to put it in), as `rexec cp`: into
    /// a temporary file there, checked end to end and renamed into place.
    pub fn upload(&self, local: impl AsRef<Path>, remote: &str) -> Result<(), Error> {
        self.upload_with(local, remote, CopyOptions::default())
    }

    /// [`Client::upload`] with [`CopyOptions`].
    pub fn upload_with(
        &self,
        local: impl AsRef<Path>,
        remote: &str,
        how: CopyOptions,
    ) -> Result<(), Error> {
        let mut session = self.copy_session()?;
        crate::copy::send(
            &mut session,
            local.as_ref(),
            remote.as_ref(),
            how.recursive,
            how.preserve,
        )
        .map_err(Error::Copy)
    }

    /// Fetches `remote` from the server into `local` (a file name, or an
    /// existing directory to put it in), checked end to end. A name the
    /// server lists that would lead outside `local` is refused.
    pub fn download(&self, remote: &str, local: impl AsRef<Path>) -> Result<(), Error> {
        self.download_with(remote, local, CopyOptions::default())
    }

    /// [`Client::download`] with [`CopyOptions`].
    pub fn download_with(
        &self,
        remote: &str,
        local: impl AsRef<Path>,
        how: CopyOptions,
    ) -> Result<(), Error> {
        let mut session = self.copy_session()?;
        crate::copy::fetch(
            &mut session,
            remote.as_ref(),
            local.as_ref(),
            how.recursive,
            how.preserve,
        )
        .map_err(Error::Copy)
    }

    /// Starts `command` as a detached job (`rexec -d`): it runs on when
    /// this client goes, and its output is kept. Returns its number.
    pub fn start_job(&self, command: &str) -> Result<u64, Error> {
        let exec = Exec {
            command: command.to_string(),
            ..Exec::default()
        };
        let out = self.job(exec, JobVerb::Start)?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .map_err(|_| Error::Refused(format!("not a job number: {:?}", text.trim())))
    }

    /// This account's jobs, as `rexec jobs` lists them (one line each).
    pub fn jobs(&self) -> Result<String, Error> {
        let out = self.job(Exec::default(), JobVerb::List { json: false })?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A job's kept output from its start, then what it writes until it
    /// ends; the status is the job's own.
    pub fn attach(&self, job: u64) -> Result<Output, Error> {
        self.job(Exec::default(), JobVerb::Attach { job })
    }

    /// Ends a job and everything it started.
    pub fn kill_job(&self, job: u64) -> Result<(), Error> {
        self.job(Exec::default(), JobVerb::Kill { job }).map(drop)
    }

    /// Sends a job request and waits for its answer, which comes as a
    /// command's would.
    fn job(&self, mut exec: Exec, verb: JobVerb) -> Result<Output, Error> {
        let inner = &self.inner;
        if inner.protocol < rexec_proto::JOBS_PROTOCOL {
            return Err(Error::Usage(format!(
                "this server has no detached jobs (protocol {}; jobs need {})",
                inner.protocol,
                rexec_proto::JOBS_PROTOCOL
            )));
        }
        exec.id = inner.next_id();
        let out = super::child::collect(self, exec.id, |w| w.send(&ClientMsg::Job { exec, verb }))?;
        match verb {
            // A job verb's refusal is its status and its words.
            JobVerb::Attach { .. } => Ok(out),
            _ if out.status.success() => Ok(out),
            _ => Err(Error::Refused(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            )),
        }
    }
}
