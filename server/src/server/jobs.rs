//! Job verbs (`rexec -d`, `jobs`, `attach`, `kill`): each is a helper
//! process (jobs.rs) launched like a command, so its output and exit
//! status reach the client as a command's do. Nothing here reads or
//! writes a job's files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rexec_proto::{ErrorKind, Exec, JobVerb};

use super::Server;
use crate::process::CommandError;
use crate::registry::ConnId;

impl Server {
    /// A `Job` message: its helper runs under the request's id.
    pub(super) fn job(&mut self, conn_id: ConnId, exec: Exec, verb: JobVerb) {
        let id = exec.id;
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let refusal = if self.stop.begun {
            Some((ErrorKind::Shutdown, "no new commands are started".into()))
        } else if conn.command(id).is_some() {
            Some((
                ErrorKind::BadRequest,
                format!("command id {id} is already running on this connection"),
            ))
        } else {
            None
        };
        if let Some((kind, message)) = refusal {
            return self.command_error(conn_id, id, kind, message);
        }
        if let Err(e) = self.run_job(conn_id, exec, verb) {
            self.command_error(conn_id, id, e.kind, e.message);
        }
    }

    fn run_job(&mut self, conn_id: ConnId, exec: Exec, verb: JobVerb) -> Result<(), CommandError> {
        self.room_for_a_command()?;
        let grant = self
            .conns
            .get(&conn_id)
            .map(|c| c.grant())
            .ok_or_else(|| CommandError::new(ErrorKind::Protocol, "connection gone"))?;
        if let Some(jobs) = &self.cfg.exec.jobs {
            jobs_dir(&jobs.dir).map_err(|e| {
                CommandError::os(&format!("jobs directory {}", jobs.dir.display()), e)
            })?;
        }
        // The job's own limit: the server's, or the client's if shorter.
        let timeout = match (self.cfg.timeout, exec.timeout_ms) {
            (Some(a), Some(b)) => a.as_secs().min(b.div_ceil(1000)),
            (Some(a), None) => a.as_secs(),
            (None, Some(b)) => b.div_ceil(1000),
            (None, None) => 0,
        };
        let cmd = crate::job_command::job_command(&exec, verb, &self.cfg.exec, &grant, timeout)?;
        let label = match verb {
            JobVerb::Start => format!("job: {}", exec.command),
            JobVerb::List { .. } => "jobs".into(),
            JobVerb::Attach { job } => format!("attach {job}"),
            JobVerb::Kill { job } => format!("kill {job}"),
            JobVerb::Clean => "jobs --clean".into(),
        };
        let run = Exec {
            id: exec.id,
            command: label,
            ..Exec::default()
        };
        self.launch(conn_id, run, cmd, false)
    }
}

/// Makes the jobs directory the first time: each account's helpers make
/// their own job directories in it, so when rexecd runs as root (and its
/// commands as other accounts) it is writable by all and sticky, as /tmp;
/// otherwise it is rexecd's account's alone. (Once made, one stat.)
fn jobs_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let mode = match rustix::process::geteuid().is_root() {
        true => 0o1777,
        false => 0o700,
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}
