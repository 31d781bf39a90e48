# Ansible connection plugin: run tasks over rexec instead of ssh.
# Use: ANSIBLE_CONNECTION_PLUGINS=contrib/ansible/plugins/connection and
# ansible_connection=rexec in the inventory. The managed host needs rexecd
# and Python, as with ssh.
from __future__ import annotations

DOCUMENTATION = """
name: rexec
short_description: run tasks over rexec (rexecd on the managed host)
description:
  - Runs commands with the rexec client and copies files with rexec cp,
    checked with SHA-256 and renamed into place only when complete.
  - The managed host needs a running rexecd and Python, as with ssh.
author: rexec developers
version_added: "2.19"
options:
  remote_addr:
    description: The host to connect to.
    default: inventory_hostname
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_host
  port:
    description: rexecd's port (7070 when not set).
    type: int
    vars:
      - name: ansible_port
  rexec_token_file:
    description: File holding the token rexecd requires (mode 0600).
    type: str
    vars:
      - name: rexec_token_file
  rexec_fingerprint:
    description: The TLS fingerprint to pin (SHA256:...); turns TLS on.
    type: str
    vars:
      - name: rexec_fingerprint
  rexec_path:
    description: The rexec client to run.
    type: str
    default: rexec
    vars:
      - name: rexec_path
"""

import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

# rexec's exit status when the connection, the protocol or authentication
# failed (as ssh's 255).
EXIT_CONNECTION = 255


class Connection(ConnectionBase):
    """Tasks over rexec."""

    transport = "rexec"
    has_pipelining = True

    def _connect(self):
        self._connected = True
        return self

    def _base(self):
        argv = [self.get_option("rexec_path")]
        token = self.get_option("rexec_token_file")
        if token:
            argv += ["--token-file", token]
        fingerprint = self.get_option("rexec_fingerprint")
        if fingerprint:
            argv += ["--fingerprint", fingerprint]
        return argv

    def _host(self):
        host = self.get_option("remote_addr")
        port = self.get_option("port")
        return f"{host}:{port}" if port else host

    def _run(self, argv, in_data=None):
        display.vvv(f"REXEC: {' '.join(argv)}", host=self.get_option("remote_addr"))
        try:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if in_data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as e:
            raise AnsibleError(f"cannot run {argv[0]}: {e}") from e
        out, err = p.communicate(in_data)
        return p.returncode, out, err

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        # One word: a shell string for the remote /bin/sh, as ssh does.
        # -T: no pseudo-terminal; -n unless there is input (pipelining).
        argv = self._base() + ["-T"]
        if in_data is None:
            argv.append("-n")
        argv += [self._host(), to_text(cmd)]
        rc, out, err = self._run(argv, to_bytes(in_data) if in_data is not None else None)
        if rc == EXIT_CONNECTION and b"rexec: " in err:
            raise AnsibleConnectionFailure(to_text(err).strip())
        return rc, out, err

    def _copy(self, src, dest, what):
        rc, _out, err = self._run(self._base() + ["cp", src, dest])
        if rc != 0:
            message = to_text(err).strip() or f"rexec cp exited {rc}"
            if rc == EXIT_CONNECTION:
                raise AnsibleConnectionFailure(message)
            raise AnsibleError(f"{what} failed: {message}")

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        self._copy(in_path, f"{self._host()}:{out_path}", "put_file")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        self._copy(f"{self._host()}:{in_path}", out_path, "fetch_file")

    def close(self):
        self._connected = False
