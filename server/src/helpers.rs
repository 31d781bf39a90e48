//! Everything that runs as a child process of rexecd's own executable
//! (`rexecd __contain`, `__files`, `__job`), started like any command: as
//! the connection's account, so the kernel's permissions decide what it may
//! touch, and outside the event loop, so it may block.
//!
//! - contain.rs: the `--contain` supervisor, which ends all a command
//!   started when it ends; family.rs: what it and a job's supervisor share
//!   (the processes below them: reaping, ending them all);
//! - files*.rs: file transfers (`rexec cp`), their typed requests and what
//!   they share;
//! - jobs.rs and jobs/: detached jobs, their supervisor and their verbs.

pub(crate) mod contain;
pub(crate) mod family;
pub(crate) mod files;
pub(crate) mod files_batch;
pub(crate) mod files_get;
pub(crate) mod files_path;
pub(crate) mod files_request;
pub(crate) mod files_scan;
pub(crate) mod files_tree;
pub(crate) mod jobs;
