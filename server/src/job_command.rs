//! The commands for job verbs: rexecd's `__job` helper (jobs.rs) under the
//! connection's account, and for `Start` the job itself behind it, built
//! as any command is (exec_policy.rs) so it runs with the same shell,
//! environment, directory, account and policy.

use rexec_proto::{ErrorKind, Exec, JobVerb};
use std::process::Command;

use crate::auth::grant::Grant;
use crate::exec_policy::{ExecPolicy, helper_command, set_environment, start_dir, what_to_run};
use crate::helpers::jobs::Settings;
use crate::process::CommandError;

/// The command that carries out `verb`; `timeout` (seconds, 0 for none)
/// is the job's time limit.
pub fn job_command(
    exec: &Exec,
    verb: JobVerb,
    policy: &ExecPolicy,
    grant: &Grant,
    timeout: u64,
) -> Result<Command, CommandError> {
    grant.check_helper("jobs")?;
    let Some(jobs) = &policy.jobs else {
        return Err(CommandError::new(
            ErrorKind::Forbidden,
            "jobs are off on this server (rexecd has no state directory for them)",
        ));
    };
    if let Some(why) = &jobs.unreachable
        && policy.account(grant).is_some_and(|a| a.uid != 0)
    {
        return Err(CommandError::new(
            ErrorKind::Forbidden,
            format!(
                "jobs are off for this account here: {why} (rexecd's administrator can give \
                 it --state-dir /var/lib/rexec)"
            ),
        ));
    }
    let helper = |verb: &str, rest: &[String]| {
        helper_command(
            policy,
            grant,
            &jobs.exe,
            jobs.args(verb)
                .into_iter()
                .chain(rest.iter().map(Into::into)),
        )
    };
    Ok(match verb {
        JobVerb::Start => return start(exec, policy, grant, jobs, timeout),
        JobVerb::List { json } => helper("list", &[if json { "--json" } else { "" }.into()]),
        JobVerb::Attach { job } => helper("attach", &[job.to_string()]),
        JobVerb::Kill { job } => helper("kill", &[job.to_string()]),
        JobVerb::Clean => helper("clean", &[]),
    })
}

/// `__job start TIMEOUT COMMAND [--arg0 NAME] -- PROGRAM ARGS...`, with
/// the environment, directory and account of the command.
fn start(
    exec: &Exec,
    policy: &ExecPolicy,
    grant: &Grant,
    jobs: &Settings,
    timeout: u64,
) -> Result<Command, CommandError> {
    grant.check_exec(exec)?;
    if exec.pty.is_some() {
        return Err(CommandError::bad("a job has no terminal: leave out -t"));
    }
    let (program, arg0, args) = what_to_run(exec, policy, grant)?;
    let mut cmd = Command::new(&jobs.exe);
    cmd.args(jobs.args("start"))
        .arg(timeout.to_string())
        .arg(&exec.command);
    if let Some(a) = arg0 {
        cmd.arg("--arg0").arg(a);
    }
    cmd.arg("--").arg(program).args(args);
    cmd.current_dir(start_dir(exec, policy, grant)?);
    set_environment(&mut cmd, exec, policy, grant)?;
    Ok(cmd)
}
