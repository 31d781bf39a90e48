//! The connection as the [`Sink`] a command's output is pumped into
//! (process/pump.rs): the command sees these calls and nothing else of it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use rexec_proto::OutputStream;

use super::{Connection, Hold};
use crate::process::Sink;
use crate::splice::Sent;

impl Sink for Connection {
    fn peer(&self) -> SocketAddr {
        Connection::peer(self)
    }
    fn is_dead(&self) -> bool {
        Connection::is_dead(self)
    }
    fn set_dead(&mut self) {
        Connection::set_dead(self);
    }
    fn is_native(&self) -> bool {
        Connection::is_native(self)
    }
    fn queued(&self) -> usize {
        Connection::queued(self)
    }
    fn frames(&mut self) -> &mut Vec<u8> {
        Connection::frames(self)
    }
    fn flush(&mut self) {
        Connection::flush(self);
    }
    fn output_blocked(&self, queue_limit: usize, zero_copy: bool, over_budget: bool) -> bool {
        Connection::output_blocked(self, queue_limit, zero_copy, over_budget)
    }
    fn memory_held(&self) -> bool {
        self.is_held(Hold::Memory)
    }
    fn can_splice(&self) -> bool {
        Connection::can_splice(self)
    }
    fn zero_copy(&self) -> bool {
        Connection::zero_copy(self)
    }
    fn splice_from(
        &mut self,
        pipe: BorrowedFd<'_>,
        stream: OutputStream,
        id: u32,
        len: usize,
    ) -> io::Result<Sent> {
        Connection::splice_from(self, pipe, stream, id, len)
    }
}
