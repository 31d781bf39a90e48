#!/usr/bin/env python3
"""A soak of one rexecd under mixed load (issue 29). Started by bench/soak.

For --minutes M, workers run side by side against one rexecd on 127.0.0.1:
short commands (output and exit code checked), large streams (counted to
the byte, every byte checked), slow readers (64 KiB every 50 ms), stdin round
trips (SHA-256 both ways), copies up and down (SHA-256), ptys (and stdin for
commands on one, SHA-256), time limits and clients killed mid-stream. Every
few seconds it samples rexecd's RSS, descriptors, threads and zombie
children.

It fails (exit 1) on any wrong byte, count or exit status; on a zombie that
is still there at the next sample; on RSS whose peak in the second half of
the run is well above the first half's; and on descriptors, threads or
children that are not back to where they started once the load is over.

Everything talks to 127.0.0.1 only; rexecd and every client are started
here and stopped by PID.
"""
import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Soak:
    def __init__(self, bins, minutes, workdir, server_log="warn"):
        self.rexec_bin = os.path.join(bins, "rexec")
        self.rexecd = os.path.join(bins, "rexecd")
        self.deadline = time.monotonic() + minutes * 60
        self.work = workdir
        self.lock = threading.Lock()
        self.counts = {}
        self.bytes = {}
        self.failures = []
        self.samples = []
        self.env = dict(os.environ)
        for k in ("REXEC_TLS", "REXEC_TOKEN", "RUST_LOG"):
            self.env.pop(k, None)
        self.env["REXEC_KNOWN_HOSTS"] = os.path.join(workdir, "known_hosts")
        self.env["REXEC_CONFIG"] = os.path.join(workdir, "empty-config.toml")
        open(self.env["REXEC_CONFIG"], "w").close()
        self.server_log = open(os.path.join(workdir, "rexecd.log"), "wb")
        self.server = subprocess.Popen(
            [self.rexecd, "--listen", "127.0.0.1:0", "--max-procs", "512"],
            stdout=subprocess.PIPE, stderr=self.server_log,
            env=dict(self.env, RUST_LOG=server_log))
        line = self.server.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"soak: rexecd said {line!r}")
        self.host = line[len("listening on "):]
        self.pid = self.server.pid

    # --- bookkeeping -----------------------------------------------------

    def ok(self, kind, nbytes=0):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.bytes[kind] = self.bytes.get(kind, 0) + nbytes

    def fail(self, kind, what):
        with self.lock:
            self.failures.append(f"{kind}: {what}")
        log(f"FAIL {kind}: {what}")

    def running(self):
        return time.monotonic() < self.deadline and len(self.failures) < 20

    def rexec(self, *args, **kw):
        return subprocess.run([self.rexec_bin, *args], env=self.env, **kw)

    # --- workers ---------------------------------------------------------

    def short(self, n):
        i = n * 1_000_000
        while self.running():
            i += 1
            code = i % 7
            r = self.rexec(self.host, f"echo out-{i}; echo err-{i} >&2; exit {code}",
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
            if (r.returncode, r.stdout, r.stderr) != (code, f"out-{i}\n".encode(), f"err-{i}\n".encode()):
                self.fail("short", f"#{i}: exit {r.returncode}, stdout {r.stdout[:80]!r}, stderr {r.stderr[:200]!r}")
            else:
                self.ok("short")

    def stream(self, size, pace=None, kind="stream"):
        """`head -c size /dev/zero`, read whole; with pace, 64 KiB per pace s."""
        while self.running():
            p = subprocess.Popen([self.rexec_bin, self.host, f"head -c {size} /dev/zero"],
                                 env=self.env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            got, bad = 0, 0
            while True:
                chunk = p.stdout.read1(64 << 10) if pace else p.stdout.read1(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
                bad += len(chunk) - chunk.count(0)
                if pace:
                    time.sleep(pace)
            err = p.stderr.read()
            rc = p.wait()
            if (rc, got, bad) != (0, size, 0):
                self.fail(kind, f"exit {rc}, {got} of {size} bytes, {bad} wrong; {err[-300:]!r}")
            else:
                self.ok(kind, got)

    def stdin_round_trip(self):
        rnd = random.Random(7)
        while self.running():
            data = rnd.randbytes(rnd.randint(1, 4 * MiB))
            want = hashlib.sha256(data).hexdigest()
            r = self.rexec(self.host, "sha256sum", input=data, capture_output=True, timeout=120)
            r2 = self.rexec(self.host, "cat", input=data, capture_output=True, timeout=120)
            if r.returncode != 0 or r.stdout.split()[:1] != [want.encode()]:
                self.fail("stdin", f"sha256sum: exit {r.returncode}, {r.stdout[:80]!r} (want {want}); "
                                   f"{r.stderr[-300:]!r}")
            elif r2.returncode != 0 or r2.stdout != data:
                self.fail("stdin", f"cat: exit {r2.returncode}, {len(r2.stdout)} of {len(data)} bytes back; "
                                   f"{r2.stderr[-300:]!r}")
            else:
                self.ok("stdin", 2 * len(data))

    def copies(self):
        rnd = random.Random(11)
        d = os.path.join(self.work, "copies")
        os.makedirs(os.path.join(d, "there"), exist_ok=True)
        n = 0
        while self.running():
            n += 1
            data = rnd.randbytes(rnd.randint(0, 24 * MiB))
            src, back = os.path.join(d, f"src-{n}"), os.path.join(d, f"back-{n}")
            there = os.path.join(d, "there", f"src-{n}")
            with open(src, "wb") as f:
                f.write(data)
            up = self.rexec("cp", src, f"{self.host}:{there}", capture_output=True, timeout=300)
            down = self.rexec("cp", f"{self.host}:{there}", back, capture_output=True, timeout=300)
            want = hashlib.sha256(data).digest()
            problems = []
            if up.returncode != 0:
                problems.append(f"up exit {up.returncode}: {up.stderr[-200:]!r}")
            if down.returncode != 0:
                problems.append(f"down exit {down.returncode}: {down.stderr[-200:]!r}")
            for path in (there, back):
                if not os.path.exists(path) or hashlib.sha256(open(path, "rb").read()).digest() != want:
                    problems.append(f"{path} differs")
            if problems:
                self.fail("copy", f"{len(data)} bytes: " + "; ".join(problems))
            else:
                self.ok("copy", 2 * len(data))
            for path in (src, back, there):
                if os.path.exists(path):
                    os.unlink(path)

    def ptys(self):
        rnd = random.Random(13)
        i = 0
        while self.running():
            i += 1
            r = self.rexec("-tt", self.host, f"echo pty-{i}; stty size; exit 3",
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
            if r.returncode != 3 or f"pty-{i}\r\n".encode() not in r.stdout:
                self.fail("pty", f"#{i}: exit {r.returncode}, {r.stdout[:120]!r} {r.stderr[-200:]!r}")
            else:
                self.ok("pty")
            if i % 10 == 0:
                self.pty_stdin(rnd)

    def pty_stdin(self, rnd):
        """Stdin for a command on a terminal (-tt, stdin not a terminal), in
        chunks large enough to be spliced on a pipe; text in short lines, so
        that the terminal's line editing before `stty` changes no byte."""
        lines = rnd.randint(1000, 20000)
        data = "".join(f"{rnd.getrandbits(128):032x}\n" for _ in range(lines)).encode()
        n = len(data) // 2
        want = hashlib.sha256(data[:n]).hexdigest().encode()
        r = self.rexec("-tt", self.host, f"stty -echo -icanon; head -c {n} | sha256sum",
                       input=data, capture_output=True, timeout=120)
        if r.returncode != 0 or want not in r.stdout:
            self.fail("pty stdin", f"exit {r.returncode}, {r.stdout[-120:]!r} (want {want.decode()}); "
                                   f"{r.stderr[-300:]!r}")
        else:
            self.ok("pty stdin", n)

    def cut_short(self):
        """Time limits and clients killed mid-stream: nothing may be left."""
        i = 0
        while self.running():
            i += 1
            r = self.rexec("--timeout", "1", self.host, "sleep 30", stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=120)
            if r.returncode != 124:
                self.fail("timeout", f"exit {r.returncode} (want 124): {r.stderr[-200:]!r}")
            else:
                self.ok("timeout")
            p = subprocess.Popen([self.rexec_bin, self.host, "yes soak"], env=self.env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
            p.stdout.read(1 << 20)
            p.kill()
            p.wait()
            p.stdout.close()
            self.ok("killed client")

    # --- sampling --------------------------------------------------------

    def children(self):
        kids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            after = stat[stat.rfind(")") + 2:].split()
            if int(after[1]) == self.pid:
                kids.append((int(pid), after[0]))
        return kids

    def sample(self):
        status = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.split()
        kids = self.children()
        return {
            "t": time.monotonic(),
            "rss": int(status["VmRSS"][0]) * 1024,
            "threads": int(status["Threads"][0]),
            "fds": len(os.listdir(f"/proc/{self.pid}/fd")),
            "children": len(kids),
            "zombies": {pid for pid, state in kids if state == "Z"},
        }

    def sampler(self, every):
        prev = set()
        while self.running():
            s = self.sample()
            self.samples.append(s)
            stuck = s["zombies"] & prev
            if stuck:
                self.fail("zombie", f"rexecd's children {sorted(stuck)} stayed zombies for {every} s")
            prev = s["zombies"]
            time.sleep(every)

    # --- the run -----------------------------------------------------------

    def run(self, every):
        base = self.sample()
        workers = [
            (self.short, (0,)), (self.short, (1,)), (self.short, (2,)),
            (self.stream, (64 * MiB,)),
            (self.stream, (8 * MiB, 0.05, "slow reader")),
            (self.stream, (8 * MiB, 0.05, "slow reader")),
            (self.stdin_round_trip, ()),
            (self.copies, ()),
            (self.ptys, ()),
            (self.cut_short, ()),
            (self.sampler, (every,)),
        ]
        threads = [threading.Thread(target=self.guard, args=w, daemon=True) for w in workers]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - started
        self.check_growth()
        end = self.settle(base)
        return base, end, took

    def guard(self, fn, args):
        try:
            fn(*args)
        except Exception as e:  # a worker that dies is a failure, not a hang
            self.fail(fn.__name__, f"{type(e).__name__}: {e}")

    def check_growth(self):
        if len(self.samples) < 6:
            return
        half = len(self.samples) // 2
        first = max(s["rss"] for s in self.samples[:half])
        second = max(s["rss"] for s in self.samples[half:])
        if second > first * 1.25 + 4 * MiB:
            self.fail("rss", f"peak {first / MiB:.1f} MiB in the first half, {second / MiB:.1f} MiB in the second")

    def settle(self, base):
        """Once the load is over, rexecd must be back where it started."""
        end = None
        limit = time.monotonic() + 30
        while time.monotonic() < limit:
            end = self.sample()
            if (end["fds"], end["threads"], end["children"]) == (base["fds"], base["threads"], base["children"]):
                return end
            time.sleep(0.5)
        self.fail("settle", f"after the load: {end['fds']} descriptors (from {base['fds']}), "
                            f"{end['threads']} threads (from {base['threads']}), {end['children']} children")
        return end

    def stop(self):
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


SOAK_BEGIN = "<!-- soak -->"  # as in bench.py, which keeps the section
SOAK_END = "<!-- /soak -->"


def write_results(path, table, minutes, bins):
    """Puts the soak's section in bench/RESULTS.md, replacing the last one."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        text = ""
    start, end = text.find(SOAK_BEGIN), text.find(SOAK_END)
    if 0 <= start < end:
        text = text[:start].rstrip("\n") + "\n" + text[end + len(SOAK_END):].lstrip("\n")
    cpu = os.cpu_count()
    section = "\n".join([
        SOAK_BEGIN,
        "## Soak",
        "",
        f"`bench/soak --minutes {minutes:g}` on {time.strftime('%Y-%m-%d')}, {cpu} cores, "
        f"{os.path.basename(os.path.normpath(bins))} binaries: one rexecd under mixed load, "
        "every byte, count and exit status checked; rexecd sampled every few seconds.",
        "",
        table,
        SOAK_END,
    ])
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n\n" + section + "\n")


def report(s, base, end, took):
    rss = [x["rss"] for x in s.samples] or [base["rss"]]
    fds = [x["fds"] for x in s.samples] or [base["fds"]]
    thr = [x["threads"] for x in s.samples] or [base["threads"]]
    lines = [
        f"soak: {took / 60:.1f} minutes against one rexecd ({len(s.samples)} samples)",
        "",
        "| work | done | bytes checked |",
        "|---|---|---|",
    ]
    for kind in sorted(s.counts):
        b = s.bytes.get(kind, 0)
        lines.append(f"| {kind} | {s.counts[kind]:,} | {b / MiB:,.0f} MiB |" if b else f"| {kind} | {s.counts[kind]:,} | |")
    lines += [
        "",
        "| rexecd | start | min | max | end |",
        "|---|---|---|---|---|",
        f"| RSS (MiB) | {base['rss'] / MiB:.1f} | {min(rss) / MiB:.1f} | {max(rss) / MiB:.1f} | {end['rss'] / MiB:.1f} |",
        f"| descriptors | {base['fds']} | {min(fds)} | {max(fds)} | {end['fds']} |",
        f"| threads | {base['threads']} | {min(thr)} | {max(thr)} | {end['threads']} |",
        f"| zombies seen at a sample | 0 | | {max(len(x['zombies']) for x in s.samples) if s.samples else 0} | {len(end['zombies'])} |",
        "",
        f"failures: {len(s.failures)}",
    ]
    table = "\n".join(lines + [f"  {f}" for f in s.failures])
    print(table)
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                    help="where rexec and rexecd are (default: target/release)")
    ap.add_argument("--every", type=float, default=3, help="seconds between samples")
    ap.add_argument("--results", help="write the figures into this file's soak section "
                                      "(bench/soak: bench/RESULTS.md)")
    ap.add_argument("--server-log", default="warn", metavar="LEVEL",
                    help="rexecd's RUST_LOG (default: warn; debug says why each connection closed)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rexec-soak-")
    s = Soak(a.bin_dir, a.minutes, work, a.server_log)
    try:
        base, end, took = s.run(a.every)
        table = report(s, base, end, took)
        if a.results:
            write_results(a.results, table, a.minutes, a.bin_dir)
    finally:
        s.stop()
        s.server_log.close()
        if s.failures:
            log(f"soak: rexecd's log is in {work}/rexecd.log")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if s.failures else 0)


if __name__ == "__main__":
    main()
