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
extends_documentation_fragment:
  - connection_pipelining
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
  remote_user:
    description:
      - The account to log in as (rexec -l), with a key, on a host whose
        rexecd runs with --login. A server that takes a token, or no key at
        all, runs commands as its own account; rexec then warns that the
        user is not used.
    type: str
    vars:
      - name: ansible_user
    env:
      - name: ANSIBLE_REMOTE_USER
    ini:
      - section: defaults
        key: remote_user
  private_key_file:
    description:
      - A private key file to offer (rexec -i), after the keys in ssh-agent,
        as ssh's -i. Without it, rexec offers the agent's keys and
        ~/.ssh/id_ed25519, id_ecdsa and id_rsa.
    type: path
    vars:
      - name: ansible_private_key_file
      - name: ansible_ssh_private_key_file
    env:
      - name: ANSIBLE_PRIVATE_KEY_FILE
    ini:
      - section: defaults
        key: private_key_file
  timeout:
    description: Seconds to wait for the connection (rexec --connect-timeout).
    type: int
    default: 10
    vars:
      - name: ansible_timeout
      - name: ansible_rexec_timeout
    env:
      - name: ANSIBLE_TIMEOUT
    ini:
      - section: defaults
        key: timeout
  token_file:
    description: File holding the token rexecd requires (mode 0600).
    type: path
    vars:
      - name: ansible_rexec_token_file
      - name: rexec_token_file
    env:
      - name: ANSIBLE_REXEC_TOKEN_FILE
    ini:
      - section: rexec_connection
        key: token_file
  fingerprint:
    description: The TLS fingerprint to pin (SHA256:...); turns TLS on.
    type: str
    vars:
      - name: ansible_rexec_fingerprint
      - name: rexec_fingerprint
    env:
      - name: ANSIBLE_REXEC_FINGERPRINT
    ini:
      - section: rexec_connection
        key: fingerprint
  tls:
    description: Speak TLS (without a fingerprint, a CA or known-hosts file says whom to trust).
    type: bool
    default: false
    vars:
      - name: ansible_rexec_tls
    env:
      - name: ANSIBLE_REXEC_TLS
  ca:
    description: A CA certificate (PEM) to check the server's certificate with; turns TLS on.
    type: path
    vars:
      - name: ansible_rexec_ca
  known_hosts:
    description:
      - The known-hosts file for pinned fingerprints. By default a pinned
        fingerprint is checked without writing to the user's own file.
    type: path
    vars:
      - name: ansible_rexec_known_hosts
  accept_new:
    description: Trust a server seen for the first time and remember it (as ssh's accept-new).
    type: bool
    default: false
    vars:
      - name: ansible_rexec_accept_new
  rexec_path:
    description: >-
      The rexec client to run: a name without a slash is looked up on PATH
      (as a shell would), a path is used as it is.
    type: str
    default: rexec
    vars:
      - name: ansible_rexec_path
      - name: rexec_path
    env:
      - name: ANSIBLE_REXEC_PATH
"""

import os
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

class Connection(ConnectionBase):
    """Tasks over rexec."""

    transport = "rexec"
    has_pipelining = True

    def _connect(self):
        self._connected = True
        return self

    def reset(self):
        # Every command is its own connection: there is nothing to reset.
        pass

    def _base(self):
        argv = [self.get_option("rexec_path"), "--connect-timeout", str(self.get_option("timeout"))]
        user = self.get_option("remote_user")
        if user:
            argv += ["-l", user]
        key = self.get_option("private_key_file")
        if key:
            argv += ["-i", key]
        token = self.get_option("token_file")
        if token:
            argv += ["--token-file", token]
        fingerprint = self.get_option("fingerprint")
        known_hosts = self.get_option("known_hosts")
        if fingerprint:
            argv += ["--fingerprint", fingerprint]
            # A pin is checked, not written into the user's own file.
            if not known_hosts:
                known_hosts = os.devnull
        if self.get_option("ca"):
            argv += ["--ca", self.get_option("ca")]
        if self.get_option("tls"):
            argv.append("--tls")
        if self.get_option("accept_new"):
            argv.append("--accept-new")
        if known_hosts:
            argv += ["--known-hosts", known_hosts]
        return argv

    def _host(self):
        host = self.get_option("remote_addr")
        port = self.get_option("port")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        return f"{host}:{port}" if port else host

    def _run(self, argv, in_data=None):
        """Runs rexec; returns (rc, stdout, stderr, failure), where failure is
        what rexec itself said went wrong on the way (on its --error-fd, never
        mixed with the remote command's output), or None."""
        display.vvv(f"REXEC: {' '.join(argv)}", host=self.get_option("remote_addr"))
        r, w = os.pipe()
        argv = argv[:1] + ["--error-fd", str(w)] + argv[1:]
        try:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if in_data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(w,),
            )
        except OSError as e:
            os.close(r)
            os.close(w)
            raise AnsibleError(f"cannot run {argv[0]}: {e}") from e
        os.close(w)
        try:
            out, err = p.communicate(in_data)
        finally:
            with os.fdopen(r, "rb") as f:
                failure = f.read().decode(errors="replace").strip() or None
        return p.returncode, out, err, failure

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        if sudoable and self.become and self.become.expect_prompt():
            # rexec gives no terminal to answer a password prompt on.
            raise AnsibleError(
                "rexec: become with a password is not supported; "
                "use passwordless become (NOPASSWD for sudo)"
            )
        # One word: a shell string for the remote /bin/sh, as ssh does.
        # -T: no pseudo-terminal; -n unless there is input (pipelining).
        argv = self._base() + ["-T"]
        if in_data is None:
            argv.append("-n")
        argv += [self._host(), to_text(cmd)]
        rc, out, err, failure = self._run(argv, to_bytes(in_data) if in_data is not None else None)
        if failure:
            raise AnsibleConnectionFailure(failure)
        return rc, out, err

    def _copy(self, src, dest, what):
        rc, _out, err, failure = self._run(self._base() + ["cp", src, dest])
        if failure:
            raise AnsibleConnectionFailure(failure)
        if rc != 0:
            message = to_text(err).strip() or f"rexec cp exited {rc}"
            raise AnsibleError(f"{what} failed: {message}")

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        self._copy(in_path, f"{self._host()}:{out_path}", "put_file")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        self._copy(f"{self._host()}:{in_path}", out_path, "fetch_file")

    def close(self):
        self._connected = False
