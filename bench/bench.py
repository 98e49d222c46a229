#!/usr/bin/env python3
"""`make bench`: uwgate against nginx (and its watchdog against supervisord), side by side.

Everything runs on 127.0.0.1, every load is bounded in time (wrk -d) or in count, and every
server this script starts is stopped by its pid when it ends, also on failure or Ctrl-C.

Scenarios (issue 5), each alternated uwgate / nginx over --rounds rounds; the table shows the
median of each figure per side and the ratio uwgate/nginx:
  1. 1 KiB static, keep-alive, 50 connections: req/s and p99 latency
  2. 100 KiB static, 20 connections: req/s
  3. 10 MiB static, 4 connections: MiB/s
     (2 and 3 twice: with wrk, and with examples/loadgen.rs, a client that discards bodies in
     the kernel, so that the servers rather than the client's copying set the rate)
  4. a Django view through uWSGI (the same pyuwsgi backend for both), 20 connections: req/s, p99
  5. N idle keep-alive connections after one request each: server RSS, is a fresh client served
  6. crash-to-respawn latency of a supervised program, uwgate vs supervisord (median of 20)
  7. stripped static binary size; cold start to the first served byte
  8. system calls per request of scenario 1 (strace -c), one connection and 50 connections
  9. heap allocations per request (uwgate only: a build with `--features count-alloc`, whose
     JSON status page counts them) under the loads of scenarios 1, 2 and 4
 10. slow peers (issue 11 §1): slowhttptest's slow headers, slow bodies to Django and slow
     readers, --slow-peers-conns connections each (3,000), against fresh servers with the Django
     backend, while a probe fetches a static file and a Django page every 0.5 s: probe success,
     p50/p99, server RSS against uwgate's fixed budget
 11. in-place upgrade (issue 14, uwgate only): `uwgate -s upgrade` to the other of two builds
     (--upgrade-bin, the `upgrade-test` build, reports another version) under keep-alive and
     new-connection load on a static file and Django: time from the signal to the new version's
     first answer, the longest wait a new connection saw (connect to first byte) around it, and
     refused connections / failed requests over the whole run
 12. deploys under load (issue 13): wrk -c20 on Django `/` while the supervised uWSGI is
     restarted 3 times (`uwgate ctl restart django` / `supervisorctl restart django`) and, in a
     second run, gracefully reloaded 10 times (`uwgate ctl reload-program django` / `supervisorctl
     signal HUP django`): failed requests (non-2xx and socket errors), uwgate + its own uWSGI
     against nginx + supervisord + theirs

Python 3 standard library only. Usage: see `--help`; `make bench` passes the paths.
"""

import argparse
import datetime
import errno
import json
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DJANGO_DIR = os.path.join(REPO, "tests", "django_app")

SIZES = {"1k.bin": 1024, "100k.bin": 100 * 1024, "10m.bin": 10 * 1024 * 1024}

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: every process we start is recorded and stopped by pid at the end.
# ---------------------------------------------------------------------------------------------

PROCS = []  # (label, Popen), in start order
EXTRA_PIDS = []  # (pid, comm) of supervised children we saw, killed if still there at the end


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def spawn(label, argv, **kw):
    """Starts argv in a session of its own (so its pid is also its process group id)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    PROCS.append((label, p))
    return p


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def stop(p, sig=signal.SIGTERM, grace=5.0):
    """Stops one of our processes: `sig`, a bounded wait, then SIGKILL to its process group."""
    if p.poll() is not None:
        return
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # Its process group is ours (start_new_session): workers and children go with it.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"warning: pid {p.pid} did not exit after SIGKILL")


def forget(p):
    for i, (_, q) in enumerate(PROCS):
        if q is p:
            del PROCS[i]
            return


def comm_of(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def cleanup():
    for label, p in reversed(PROCS):
        if p.poll() is None:
            log(f"stopping {label} (pid {p.pid})")
            stop(p, signal.SIGINT if label.startswith("strace") else signal.SIGTERM)
    PROCS.clear()
    for pid, comm in EXTRA_PIDS:
        if comm_of(pid) == comm and alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stat_of(pid):
    """(state, ppid) from /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(") ", 1)[1].split()
        return rest[0], int(rest[1])
    except (OSError, IndexError, ValueError):
        return None


def children_of(pid):
    """Pids whose parent is `pid` (scans /proc: CONFIG_PROC_CHILDREN is not everywhere)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat_of(name)
            if st is not None and st[1] == pid and st[0] != "Z":
                out.append(int(name))
    return out


def ppid_of(pid):
    st = stat_of(pid)
    return st[1] if st else None


def cpu_ns(pids):
    """On-CPU time of every thread of `pids` so far, in ns (/proc/PID/task/TID/schedstat)."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def http_get(port, path, timeout=5.0, host="127.0.0.1", body=False):
    """One GET on a fresh connection: (status, body length), or (status, body) when `body`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, (rest if body else len(rest))


def wait_http_200(port, path, timeout, proc=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} while waiting for {path}")
        try:
            st, _ = http_get(port, path, timeout=2.0)
            if st == 200:
                return
            last = f"status {st}"
        except (OSError, ValueError, IndexError) as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"no 200 for {path} on port {port} within {timeout}s ({last})")


class KeepAliveClient:
    """Sequential keep-alive GETs on one connection (Content-Length framed responses)."""

    def __init__(self, port, timeout=10.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, path):
        self.s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed while reading a head")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        while len(rest) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed while reading a body")
            rest += chunk
        self.buf = rest[n:]
        return int(head.split(b" ", 2)[1])

    def close(self):
        self.s.close()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------

UNIT_TIME = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
UNIT_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def wrk(url, conns, duration):
    """Runs wrk with one thread; returns req/s, bytes/s, p99 (ms), requests, errors."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "5s", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    txt = out.stdout + out.stderr
    r = {"rps": None, "bps": None, "p99": None, "requests": 0, "errors": 0, "raw": txt}
    m = re.search(r"Requests/sec:\s*([\d.]+)", txt)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"Transfer/sec:\s*([\d.]+)([KMGT]?B)", txt)
    if m:
        r["bps"] = float(m.group(1)) * UNIT_BYTES[m.group(2)]
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", txt, re.M)
    if m:
        r["p99"] = float(m.group(1)) * UNIT_TIME[m.group(2)]
    m = re.search(r"(\d+) requests in", txt)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", txt)
    if m:
        r["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    if m:
        r["errors"] += sum(int(x) for x in m.groups())
    if out.returncode != 0 or r["rps"] is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {' '.join(argv)}\n{txt}")
    return r


def loadgen(path_to_bin, port, path, conns, duration):
    """examples/loadgen.rs: keep-alive GETs whose bodies are discarded with recv(MSG_TRUNC)."""
    argv = [path_to_bin, f"127.0.0.1:{port}", path, str(conns), str(duration)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"requests (\d+) seconds ([\d.]+) bytes (\d+) errors (\d+)", out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"loadgen failed ({out.returncode}): {' '.join(argv)}\n{out.stdout}{out.stderr}")
    n, secs, nbytes, errors = int(m.group(1)), float(m.group(2)), int(m.group(3)), int(m.group(4))
    return {"rps": n / secs, "bps": nbytes / secs, "requests": n, "errors": errors}


# ---------------------------------------------------------------------------------------------
# The servers
# ---------------------------------------------------------------------------------------------


class Env:
    """Paths and knobs shared by every server of the run."""

    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.static = os.path.join(work, "static")
        self.uwsgi_port = None
        self.worker_connections = 10100
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def make_static(static):
    os.makedirs(static, exist_ok=True)
    for name, size in SIZES.items():
        with open(os.path.join(static, name), "wb") as f:
            # Incompressible, deterministic content.
            seed = size
            block = bytes(((i * 7 + seed) ^ (i >> 8)) & 0xFF for i in range(65536))
            left = size
            while left > 0:
                f.write(block[: min(left, len(block))])
                left -= len(block)
    # Small files for scenario 9's open-file cache misses.
    os.makedirs(os.path.join(static, "miss"), exist_ok=True)
    for i in range(64):
        with open(os.path.join(static, "miss", f"{i}.txt"), "w") as f:
            f.write(f"file {i}\n")


def uwgate_ini(env, port, tag, programs="", global_extra=""):
    d = os.path.join(env.work, f"uwgate-{tag}")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    path = os.path.join(d, "uwgate.ini")
    upstream = ""
    if env.uwsgi_port:
        upstream = f"\n[location:/]\nuwsgi_pass = 127.0.0.1:{env.uwsgi_port}\n"
    with open(path, "w") as f:
        f.write(
            f"""; uwgate side of `make bench` (generated)
[uwgate]
pidfile = {d}/uwgate.pid
worker_connections = {env.worker_connections}
temp_path = {d}/tmp
syslog = stderr
access_log = off
error_log_level = warn
keepalive_timeout = 75s
keepalive_requests = 100000
{global_extra}
[server]
listen = 127.0.0.1:{port}

[location:/static/]
alias = {env.static}/
{upstream}{programs}"""
        )
    return path, d


def nginx_conf(env, port, tag):
    d = os.path.join(env.work, f"nginx-{tag}")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    path = os.path.join(d, "nginx.conf")
    upstream = ""
    if env.uwsgi_port:
        upstream = f"""
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_pass 127.0.0.1:{env.uwsgi_port};
        }}"""
    with open(path, "w") as f:
        f.write(
            f"""# nginx side of `make bench` (generated)
user root root;
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile {env.nofile};
events {{
    worker_connections {env.nginx_connections};
    use epoll;
}}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location /static/ {{
            alias {env.static}/;
        }}{upstream}
    }}
}}
"""
        )
    return path, d


class Server:
    """A running uwgate or nginx on its own port."""

    def __init__(self, env, side, tag, check=True, programs="", binary=None, global_extra=""):
        self.side = side
        self.port = free_port()
        if side == "uwgate":
            path, d = uwgate_ini(env, self.port, tag, programs, global_extra)
            argv = [binary or env.args.bin, "-f", "-c", path]
        else:
            path, d = nginx_conf(env, self.port, tag)
            argv = [env.args.nginx, "-p", d + "/", "-e", d + "/error.log", "-c", path]
        self.dir = d
        self.errlog = open(os.path.join(d, "stderr.log"), "wb")
        self.t_spawn = time.perf_counter()
        self.proc = spawn(f"{side}-{tag}", argv, stdout=self.errlog, stderr=subprocess.STDOUT)
        if check:
            try:
                wait_http_200(self.port, "/static/1k.bin", 20, self.proc)
            except RuntimeError as e:
                raise RuntimeError(f"{side} did not start: {e}\n{self.stderr()}") from None

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "stderr.log"), errors="replace") as f:
                text = f.read()
            p = os.path.join(self.dir, "error.log")
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    text += f.read()
            return text[-4000:]
        except OSError:
            return ""

    def pids(self):
        """The server's processes: uwgate itself; nginx's master and its workers."""
        return [self.proc.pid] + children_of(self.proc.pid)

    def worker_pid(self):
        if self.side == "uwgate":
            return self.proc.pid
        kids = children_of(self.proc.pid)
        if len(kids) != 1:
            raise RuntimeError(f"nginx has {len(kids)} workers, expected 1")
        return kids[0]

    def rss_kib(self):
        return sum(rss_kib(p) for p in self.pids())

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        stop(self.proc, signal.SIGTERM if self.side == "uwgate" else signal.SIGQUIT)
        forget(self.proc)
        self.errlog.close()


def start_uwsgi(env):
    """One pyuwsgi with the Django test app on a migrated private sqlite db (tests' recipe)."""
    venv = env.args.venv
    db = os.path.join(env.work, "db.sqlite3")
    pyenv = dict(os.environ)
    pyenv.update(
        DJANGO_SETTINGS_MODULE="djangoblog.settings",
        UWGATE_TEST_DB=db,
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
    )
    pyenv.pop("PYTHONPATH", None)
    pyenv.pop("PYTHONHOME", None)
    log("migrating the Django test database")
    r = subprocess.run(
        [os.path.join(venv, "bin", "python"), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=DJANGO_DIR,
        env=pyenv,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if r.returncode != 0:
        raise RuntimeError(f"manage.py migrate failed:\n{r.stdout}{r.stderr}")
    env.uwsgi_port = free_port()
    ulog = open(os.path.join(env.work, "uwsgi.log"), "wb")
    argv = [
        os.path.join(venv, "bin", "uwsgi"),
        "--socket", f"127.0.0.1:{env.uwsgi_port}",
        "--socket", os.path.join(env.work, "uwsgi.sock"),
        "--chdir", DJANGO_DIR,
        "--module", "djangoblog.wsgi:application",
        "--master",
        "--processes", str(env.args.uwsgi_processes),
        "--need-app", "--no-orphans", "--die-on-term", "--vacuum",
        "--buffer-size", "65535",
        "--disable-logging",
    ]  # fmt: skip
    p = spawn("uwsgi", argv, cwd=env.work, env=pyenv, stdout=ulog, stderr=subprocess.STDOUT)
    return p


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

SIDES = ("uwgate", "nginx")


def load_scenarios(env, servers, results, rounds, duration):
    """Scenarios 1–4: wrk against the long-running servers, A B A B per round."""
    specs = [
        ("s1", "/static/1k.bin", 50),
        ("s2", "/static/100k.bin", 20),
        ("s3", "/static/10m.bin", 4),
        ("s4", "/", 20),
    ]
    specs = [s for s in specs if s[0][1:] in env.args.only]
    for name, path, conns in specs:  # warm-up: page cache, Django, nginx worker
        for side in SIDES:
            wrk(servers[side].url(path), conns, 1)
    for rnd in range(rounds):
        for name, path, conns in specs:
            for side in SIDES:
                pids = servers[side].pids()
                c0 = cpu_ns(pids)
                r = wrk(servers[side].url(path), conns, duration)
                r["cpu_us"] = (cpu_ns(pids) - c0) / 1e3 / max(1, r["requests"])
                results.setdefault(name, {}).setdefault(side, []).append(r)
                extra = f" ERRORS {r['errors']}" if r["errors"] else ""
                log(
                    f"round {rnd + 1} {name} {side:6s} {r['rps']:10.0f} req/s "
                    f"{r['bps'] / 2**20:9.1f} MiB/s p99 {r['p99']:.2f} ms, server CPU "
                    f"{r['cpu_us']:.1f} us/req{extra}"
                )
            if name in ("s2", "s3") and env.args.loadgen:
                for side in SIDES:
                    r = loadgen(env.args.loadgen, servers[side].port, path, conns, duration)
                    results.setdefault(name + "d", {}).setdefault(side, []).append(r)
                    extra = f" ERRORS {r['errors']}" if r["errors"] else ""
                    log(
                        f"round {rnd + 1} {name} {side:6s} {r['rps']:10.0f} req/s "
                        f"{r['bps'] / 2**20:9.1f} MiB/s (discarding client){extra}"
                    )


def open_idle(port, n):
    """n keep-alive connections, one GET each, left open. Returns (sockets, failures)."""
    req = b"GET /static/1k.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    socks, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(req)
            data = b""
            while True:
                chunk = s.recv(8192)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep and len(body) >= SIZES["1k.bin"]:
                    break
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(head[:40])
            socks.append(s)
        except OSError:
            failed += 1
    return socks, failed


def still_open(socks):
    """How many of `socks` the server has not closed (no EOF/RST pending)."""
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
    closed = len(ep.poll(0, maxevents=len(socks) + 1))
    ep.close()
    return len(socks) - closed


def idle_scenario(env, results, rounds):
    """Scenario 5: fresh servers, N idle keep-alive connections, RSS and a fresh client."""
    n = env.idle_n
    for rnd in range(rounds):
        for side in SIDES:
            srv = Server(env, side, f"idle{rnd}")
            time.sleep(0.3)
            base = srv.rss_kib()
            t0 = time.monotonic()
            socks, failed = open_idle(srv.port, n)
            t_open = time.monotonic() - t0
            time.sleep(1.0)
            rss = srv.rss_kib()
            try:
                st, _ = http_get(srv.port, "/static/1k.bin", timeout=5)
                fresh = st == 200
            except OSError:
                fresh = False
            kept = still_open(socks)
            for s in socks:
                s.close()
            srv.stop()
            r = {"rss": rss, "base": base, "fresh": fresh, "kept": kept, "failed": failed}
            results.setdefault("s5", {}).setdefault(side, []).append(r)
            log(
                f"round {rnd + 1} s5 {side:6s} RSS {base / 1024:.1f} -> {rss / 1024:.1f} MiB with "
                f"{len(socks)} idle ({failed} failed, {kept} still open after, opened in "
                f"{t_open:.1f}s); fresh client served: {fresh}"
            )


def find_new_child(sup_pid, old_pid, last_seen):
    """A child of sup_pid other than old_pid among pids created since `last_seen` (/proc/loadavg
    names the newest pid of this namespace), else None. Returns (pid or None, newest)."""
    with open("/proc/loadavg") as f:
        newest = int(f.read().split()[4])
    if newest == last_seen:
        return None, newest
    if newest < last_seen:  # the pid counter wrapped: look at the supervisor's children
        kids = [k for k in children_of(sup_pid) if k != old_pid]
        return (kids[0] if kids else None), newest
    for pid in range(last_seen + 1, newest + 1):
        if pid != old_pid and ppid_of(pid) == sup_pid:
            return pid, newest
    return None, newest


def sole_child(sup_pid, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [k for k in children_of(sup_pid) if comm_of(k) == "sleep"]
        if len(kids) == 1:
            return kids[0]
        time.sleep(0.02)
    raise RuntimeError(f"no single supervised child of pid {sup_pid} within {timeout}s")


def respawn_scenario(env, results, samples):
    """Scenario 6: SIGKILL the supervised child; time until a new child pid exists."""
    program = """
[program:victim]
command = /bin/sleep 1000000
autostart = true
autorestart = true
startsecs = 1
startretries = 100
"""
    gate = Server(env, "uwgate", "respawn", programs=program)
    d = os.path.join(env.work, "supervisord")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(
            f"""; supervisord side of `make bench` (generated)
[supervisord]
nodaemon = true
logfile = {d}/supervisord.log
pidfile = {d}/supervisord.pid
childlogdir = {d}
loglevel = warn
{program}stdout_logfile = NONE
stderr_logfile = NONE
"""
        )
    slog = open(os.path.join(d, "stderr.log"), "wb")
    sup = spawn(
        "supervisord", [env.args.supervisord, "-n", "-c", conf], stdout=slog, stderr=subprocess.STDOUT
    )
    sups = {"uwgate": gate.proc.pid, "supervisord": sup.pid}
    child, born = {}, {}
    for side, pid in sups.items():
        child[side] = sole_child(pid)
        born[side] = time.monotonic()
        EXTRA_PIDS.append((child[side], "sleep"))
    with open("/proc/loadavg") as f:
        last = int(f.read().split()[4])
    for i in range(samples):
        for side, sup_pid in sups.items():
            # RUNNING (startsecs) and past uwgate's one-spawn-per-second throttle.
            wait = 1.3 - (time.monotonic() - born[side])
            if wait > 0:
                time.sleep(wait)
            with open("/proc/loadavg") as f:
                last = int(f.read().split()[4])
            old = child[side]
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            deadline = t0 + 15
            new = None
            while time.perf_counter() < deadline:
                new, last = find_new_child(sup_pid, old, last)
                if new:
                    break
                # A short sleep, not a busy loop: on a 2-core machine a spinning poller would
                # take the core the supervisor needs.
                time.sleep(0.0002)
            t1 = time.perf_counter()
            if not new:
                raise RuntimeError(f"{side}: no respawn within 15 s")
            child[side], born[side] = new, time.monotonic()
            EXTRA_PIDS.append((new, "sleep"))
            results.setdefault("s6", {}).setdefault(side, []).append((t1 - t0) * 1e3)
        log(
            f"s6 kill {i + 1:2d}: uwgate {results['s6']['uwgate'][-1]:8.2f} ms, "
            f"supervisord {results['s6']['supervisord'][-1]:8.2f} ms"
        )
    stop(sup)
    forget(sup)
    slog.close()
    gate.stop()


def binary_scenario(env, results, samples):
    """Scenario 7: stripped size; cold start to the first 200 (median of `samples`)."""
    tmp = os.path.join(env.work, "uwgate.stripped")
    shutil.copyfile(env.args.bin, tmp)
    stripped = True
    if shutil.which("strip"):
        subprocess.run(["strip", tmp], check=False)
    else:
        stripped = False
    ftype = subprocess.run(["file", "-b", env.args.bin], capture_output=True, text=True).stdout
    results["s7"] = {
        "size": os.path.getsize(tmp),
        "size_as_built": os.path.getsize(env.args.bin),
        "stripped": stripped,
        "file": ftype.strip(),
        "nginx_size": os.path.getsize(env.args.nginx),
        "start": {s: [] for s in SIDES},
    }
    for i in range(samples):
        for side in SIDES:
            srv = Server(env, side, f"cold{i}", check=False)
            deadline = srv.t_spawn + 20
            t = None
            while time.perf_counter() < deadline:
                try:
                    st, _ = http_get(srv.port, "/static/1k.bin", timeout=2)
                    if st == 200:
                        t = time.perf_counter() - srv.t_spawn
                        break
                except OSError:
                    pass
                if srv.proc.poll() is not None:
                    break
            srv.stop()
            if t is None:
                raise RuntimeError(f"{side}: no 200 after a cold start\n{srv.stderr()}")
            results["s7"]["start"][side].append(t * 1e3)
    log(
        "s7 cold start medians: "
        + ", ".join(f"{s} {median(v):.1f} ms" for s, v in results["s7"]["start"].items())
    )


ALLOC_LOADS = (
    ("1 KiB static, wrk -c50", "/static/1k.bin", 50),
    ("100 KiB static, wrk -c20", "/static/100k.bin", 20),
    ("Django `/`, wrk -c20", "/", 20),
)


def keepalive_requests(port, request, n, rcvbuf=None, read_pause=0.0):
    """`n` requests on one keep-alive connection, each answer read whole (Content-Length or
    chunked); returns the statuses seen. `rcvbuf` shrinks the client's receive buffer and
    `read_pause` sleeps between reads, so a large answer backs up into uwgate's spool."""
    statuses = {}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    buf = b""
    try:
        for _ in range(n):
            s.sendall(request)
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("connection closed before a response head")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            statuses[status] = statuses.get(status, 0) + 1
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if m:
                want = int(m.group(1))
                while len(buf) < want:
                    if read_pause:
                        time.sleep(read_pause)
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("connection closed inside a body")
                    buf += chunk
                buf = buf[want:]
            elif re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
                while not re.search(rb"(?:^|\r\n)0\r\n\r\n", buf):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("connection closed inside a chunked body")
                    buf += chunk
                buf = buf[re.search(rb"(?:^|\r\n)0\r\n\r\n", buf).end():]
    finally:
        s.close()
    return statuses


def alloc_paths(env, duration):
    """Scenario 9, second part: the request paths wrk's loads do not take, each on its own
    keep-alive connection after one warm-up request; a server of its own, with a tiny
    open-file cache so files are missed, a uwsgi location on a unix socket and one whose
    upstream refuses connects."""
    sock = os.path.join(env.work, "uwsgi.sock")
    locations = (
        "\n[location:/uwgate_status]\nstub_status = on\n"
        f"\n[location:/u/]\nuwsgi_pass = unix:{sock}\nuwsgi_script_name = /u\n"
        f"\n[location:/dead/]\nuwsgi_pass = 127.0.0.1:{free_port()}\n"
    )
    srv = Server(env, "uwgate", "alloc-paths", programs=locations, binary=env.args.alloc_bin,
                 global_extra="open_file_cache = 4\nclient_max_body_size = 10m\n")
    post = (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 102400\r\n\r\n" + bytes(102400))
    files = [f"/static/miss/{i}.txt" for i in range(64)]
    loads = (
        ("Django via a unix socket", b"GET /u/ HTTP/1.1\r\nHost: x\r\n\r\n", 2000, {}),
        ("spooled request body (100 KiB POST)", post, 300, {}),
        ("spooled response (2 MB to a slow reader)",
         b"GET /stream?size=2000000&cl=1 HTTP/1.1\r\nHost: x\r\n\r\n", 20,
         {"rcvbuf": 4096, "read_pause": 0.0005}),
        ("multi-range (3 ranges of 100 KiB)",
         b"GET /static/100k.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,100-199,1000-1999\r\n\r\n",
         2000, {}),
        ("open-file cache misses (64 files, 4 entries)",
         b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in files), 40, {}),
        ("502 (upstream refuses)", b"GET /dead/ HTTP/1.1\r\nHost: x\r\n\r\n", 2000, {}),
    )
    try:
        wait_http_200(srv.port, "/static/1k.bin", 20, srv.proc)

        def allocations():
            _, body = http_get(srv.port, "/uwgate_status?format=json", body=True)
            return json.loads(body)["allocations"]

        a = allocations()
        probe = allocations() - a
        out = []
        for label, request, n, opts in loads:
            keepalive_requests(srv.port, request, 1, **opts)
            before = allocations()
            statuses = keepalive_requests(srv.port, request, n, **opts)
            count = allocations() - before - probe
            requests = sum(statuses.values())
            if label.startswith("open-file"):
                requests *= len(files)
            out.append((label, count, requests, statuses))
            log(f"s9 {label}: {count} allocations in {requests:,} requests ({statuses})")
        return out
    finally:
        srv.stop()


def alloc_scenario(env, results, duration):
    """Scenario 9: the count-alloc build under the loads of scenarios 1, 2 and 4; the JSON
    status page's "allocations" is read before and after each (after a warm-up run that
    fills the open-file cache and takes the connection slots once)."""
    status = "\n[location:/uwgate_status]\nstub_status = on\n"
    srv = Server(env, "uwgate", "alloc", programs=status, binary=env.args.alloc_bin)
    try:
        wait_http_200(srv.port, "/", 60, srv.proc)

        def allocations():
            st, body = http_get(srv.port, "/uwgate_status?format=json", body=True)
            doc = json.loads(body)
            if st != 200 or "allocations" not in doc:
                raise RuntimeError(f"no allocation count in the status page ({st}): {body[:200]!r}")
            return doc["allocations"]

        a = allocations()
        if a == 0:
            raise RuntimeError("the count-alloc build counted no allocations at all (start-up makes some)")
        probe = allocations() - a  # what reading the page itself costs (a fresh connection)
        out = {"probe": probe, "startup": a, "loads": []}
        for label, path, conns in ALLOC_LOADS:
            wrk(srv.url(path), conns, 1)
            before = allocations()
            w = wrk(srv.url(path), conns, duration)
            n = allocations() - before - probe
            out["loads"].append((label, n, w["requests"]))
            log(f"s9 {label}: {n} allocations in {w['requests']:,} requests")
    finally:
        srv.stop()
    for label, n, reqs, _ in alloc_paths(env, duration):
        out["loads"].append((label, n, reqs))
    results["s9"] = out


def parse_strace_c(path):
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            # % time  seconds  usecs/call  calls  [errors]  syscall
            if len(parts) >= 5 and re.match(r"^[\d.]+$", parts[0]) and parts[-1] != "total":
                try:
                    n = int(parts[3])
                except ValueError:
                    continue
                calls[parts[-1]] = calls.get(parts[-1], 0) + n
    return calls


class Strace:
    def __init__(self, pid, out):
        self.out = out
        self.proc = spawn(
            "strace", ["strace", "-q", "-c", "-f", "-p", str(pid), "-o", out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # attached when the tracee names a tracer
            with open(f"/proc/{pid}/status") as f:
                if re.search(r"^TracerPid:\s*[1-9]", f.read(), re.M):
                    break
            time.sleep(0.01)
        else:
            raise RuntimeError("strace did not attach")
        time.sleep(0.2)

    def finish(self):
        stop(self.proc, signal.SIGINT, grace=30)
        forget(self.proc)
        return parse_strace_c(self.out)


def syscall_scenario(env, servers, results, rounds, requests, duration):
    """Scenario 8: strace -c over `requests` sequential keep-alive GETs of the 1 KiB file on one
    connection, then over wrk -c50 for `duration` s (per request wrk counted), then over
    requests / 10 GETs of the Django view (the proxy path)."""
    for rnd in range(rounds):
        for side in SIDES:
            srv = servers[side]
            pid = srv.worker_pid()
            line = []
            for key, path, n in (("s8", "/static/1k.bin", requests), ("s8c", "/", requests // 10)):
                c = KeepAliveClient(srv.port)
                c.get(path)  # connected and warm before tracing starts
                st = Strace(pid, os.path.join(env.work, f"strace-{key}-{side}-{rnd}.txt"))
                for _ in range(n):
                    if c.get(path) != 200:
                        raise RuntimeError(f"{side}: non-200 for {path} under strace")
                calls = st.finish()
                c.close()
                results.setdefault(key, {}).setdefault(side, []).append((calls, n))
                line.append(f"{sum(calls.values()) / n:.2f} ({path}, 1 conn)")
            st = Strace(pid, os.path.join(env.work, f"strace-s8b-{side}-{rnd}.txt"))
            w = wrk(srv.url("/static/1k.bin"), 50, duration)
            calls = st.finish()
            results.setdefault("s8b", {}).setdefault(side, []).append((calls, w["requests"]))
            line.append(f"{sum(calls.values()) / max(1, w['requests']):.2f} (1 KiB, wrk -c50)")
            log(f"round {rnd + 1} s8 {side:6s} syscalls/req: " + ", ".join(line))


# ---------------------------------------------------------------------------------------------
# Scenario 10: slow peers (issue 11 §1)
# ---------------------------------------------------------------------------------------------

# (key, label). Slow headers and slow bodies (slowhttptest) go to the Django location: a head
# that never ends, a POST body that trickles in. Slow readers (bench/slowread.py, see there why
# not slowhttptest -X) fetch the 10 MiB file and take 32 bytes every 5 s.
SLOW_ATTACKS = (
    ("headers", "slow headers (slowloris)"),
    ("bodies", "slow bodies to Django (R.U.D.Y.)"),
    ("reads", "slow readers"),
)
SLOW_READ_PATH = "/static/10m.bin"


def slow_attack_argv(key, port, conns, rate, length):
    """The attack's client: runs at most `length` s by itself (and is stopped by pid anyway)."""
    if key == "reads":
        return [sys.executable, os.path.join(HERE, "slowread.py"), "--port", str(port),
                "--path", SLOW_READ_PATH, "--conns", str(conns), "--rate", str(rate),
                "--duration", str(length), "--read-bytes", "32", "--read-every", "5",
                "--rcvbuf", "1024", "--mss", "536"]  # fmt: skip
    mode = {"headers": ["-H", "-i", "10", "-x", "24"], "bodies": ["-B", "-i", "10", "-x", "24", "-s", "8192"]}
    return ["slowhttptest", *mode[key], "-c", str(conns), "-r", str(rate), "-l", str(length),
            "-p", "2", "-u", f"http://127.0.0.1:{port}/"]  # fmt: skip


SLOW_PROBES = (("static", "/static/1k.bin"), ("django", "/"))
# The target of issue 11 §1, for uwgate.
SLOW_TARGET_SUCCESS = 99.0
SLOW_TARGET_P99_MS = 50.0


def timed_get(port, path, timeout):
    """One GET on a fresh connection with an overall deadline: (ok, seconds). ok = a 200 whose
    whole body (Content-Length, chunked or up to the close) arrived before the deadline."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    ok = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                s.settimeout(left)
                chunk = s.recv(65536)
                head, sep, body = (data + chunk).partition(b"\r\n\r\n")
                status_ok = bool(sep) and re.match(rb"HTTP/1\.[01] 200 ", head) is not None
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                chunked = re.search(rb"(?im)^transfer-encoding:.*chunked", head) is not None
                if not chunk:
                    ok = status_ok and not m and (not chunked or body.endswith(b"0\r\n\r\n"))
                    break
                data += chunk
                if sep and m and len(body) >= int(m.group(1)):
                    ok = status_ok
                    break
    except (OSError, ValueError):
        ok = False
    return ok, time.perf_counter() - t0


def established_to(port):
    """Client sockets in ESTABLISHED state whose peer is 127.0.0.1:port (/proc/net/tcp): the
    attack's connections (and the odd probe), whether or not the server has accepted them.
    Counted by their local address, once each (a listing read while sockets come and go may
    show one twice)."""
    peer = f"0100007F:{port:04X}"
    seen = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f, None)
            for line in f:
                parts = line.split(None, 4)
                if len(parts) > 3 and parts[3] == "01" and parts[2] == peer:
                    seen.add(parts[1])
    except OSError:
        pass
    return len(seen)


def vm_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def percentile(xs, q):
    """Nearest-rank percentile (of 60 samples, p99 is the largest)."""
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, max(0, math.ceil(q / 100 * len(xs)) - 1))]


def slow_attack_run(env, side, attack, conns, duration, tag):
    """One attack against a fresh server: the attack client opens `conns` connections, then the probes
    run for `duration` s while the server's RSS is sampled. Everything is stopped by pid."""
    args = env.args
    key = attack[0]
    srv = Server(env, side, tag)
    attack_proc, out = None, None
    threads = []
    try:
        wait_http_200(srv.port, "/", 60, srv.proc)
        pids = srv.pids()  # nginx: master and its one worker; uwgate: itself
        time.sleep(0.3)
        base_rss = sum(rss_kib(p) for p in pids)
        # uwgate's fixed budget: its address space after start (the buffers, slots and caches
        # are all allocated then). VmData (heap and anonymous maps) must not grow: that would be
        # an allocation under attack. The stack may grow a little (it is not allocated).
        budget = vm_kib(srv.proc.pid, "VmSize") if side == "uwgate" else None
        data0 = vm_kib(srv.proc.pid, "VmData") if side == "uwgate" else None
        ramp = conns / args.slow_peers_rate + 10
        length = int(ramp + duration + 10)
        out = open(os.path.join(env.work, f"attack-{tag}-{side}.log"), "wb")
        argv = slow_attack_argv(key, srv.port, conns, args.slow_peers_rate, length)
        attack_proc = spawn(f"attack-{key}", argv, stdout=out, stderr=subprocess.STDOUT)
        # Ramp: until (nearly) every attack connection is established, bounded.
        t0 = time.monotonic()
        held = 0
        while time.monotonic() - t0 < ramp:
            held = established_to(srv.port)
            if held >= conns * 0.98 or attack_proc.poll() is not None:
                break
            time.sleep(0.25)
        ramp_s = time.monotonic() - t0
        time.sleep(1.0)  # let the server take in the first bytes of each

        lock = threading.Lock()
        probes = {k: [] for k, _ in SLOW_PROBES}

        def probe(kind, p):
            ok, secs = timed_get(srv.port, p, args.slow_peers_probe_timeout)
            with lock:
                probes[kind].append((ok, secs))

        rss_max, vm_max, data_max, stk_max, held_min, held_max = 0, 0, 0, 0, None, 0
        start = time.monotonic()
        next_probe = start
        next_count = start
        while True:
            now = time.monotonic()
            if now - start >= duration:
                break
            if now >= next_probe:
                for kind, p in SLOW_PROBES:
                    th = threading.Thread(target=probe, args=(kind, p), daemon=True)
                    th.start()
                    threads.append(th)
                next_probe += args.slow_peers_probe_interval
            if now >= next_count:
                h = established_to(srv.port)
                held_min = h if held_min is None else min(held_min, h)
                held_max = max(held_max, h)
                next_count += 1.0
            rss_max = max(rss_max, sum(rss_kib(p) for p in pids))
            if side == "uwgate":
                vm_max = max(vm_max, vm_kib(srv.proc.pid, "VmSize"))
                data_max = max(data_max, vm_kib(srv.proc.pid, "VmData"))
                stk_max = max(stk_max, vm_kib(srv.proc.pid, "VmStk"))
            time.sleep(0.1)
        for th in threads:
            th.join(args.slow_peers_probe_timeout + 2)
        attack_alive = attack_proc.poll() is None
    finally:
        if attack_proc is not None:
            stop(attack_proc)
            forget(attack_proc)
        if out is not None:
            out.close()
        for th in threads:
            th.join(args.slow_peers_probe_timeout + 2)
        srv.stop()
    with lock:
        all_probes = [r for k, _ in SLOW_PROBES for r in probes[k]]
    t_out = args.slow_peers_probe_timeout

    def summary(rs):
        # A failed probe counts as the timeout in the percentiles (it was not answered in time).
        lat = [secs * 1e3 if ok else t_out * 1e3 for ok, secs in rs]
        return {
            "n": len(rs),
            "ok": sum(1 for ok, _ in rs if ok),
            "success": 100.0 * sum(1 for ok, _ in rs if ok) / max(1, len(rs)),
            "p50": percentile(lat, 50),
            "p99": percentile(lat, 99),
        }

    r = summary(all_probes)
    r.update(
        kinds={k: summary(probes[k]) for k, _ in SLOW_PROBES},
        rss=rss_max,
        base=base_rss,
        budget=budget,
        vm_max=vm_max,
        data0=data0,
        data_max=data_max,
        stk_max=stk_max,
        held_min=held_min or 0,
        held_max=held_max,
        ramp=ramp_s,
        attack_alive=attack_alive,
    )
    return r


def slow_peers_scenario(env, results, rounds, duration):
    """Scenario 10: for each attack, A B per round on fresh servers (same Django backend)."""
    conns = env.slow_conns
    for rnd in range(rounds):
        for attack in SLOW_ATTACKS:
            key = attack[0]
            for side in SIDES:
                r = slow_attack_run(env, side, attack, conns, duration, f"slow{key}{rnd}")
                results.setdefault("s10" + key, {}).setdefault(side, []).append(r)
                k = r["kinds"]
                log(
                    f"round {rnd + 1} s10 {key:7s} {side:6s} probes {r['ok']}/{r['n']} "
                    f"({r['success']:.1f} %) p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms "
                    f"[static {k['static']['ok']}/{k['static']['n']}, django "
                    f"{k['django']['ok']}/{k['django']['n']}]; RSS {r['base'] / 1024:.1f} -> max "
                    f"{r['rss'] / 1024:.1f} MiB; attack conns {r['held_min']}-{r['held_max']} "
                    f"(ramp {r['ramp']:.1f} s)" + ("" if r["attack_alive"] else "; the attack client ended early")
                )  # fmt: skip


DEPLOY_OPS = {
    # op: (uwgate ctl verb, supervisorctl args, how many, seconds between them)
    "restart": (["restart", "django"], ["restart", "django"], 3, 6.0),
    "reload": (["reload-program", "django"], ["signal", "HUP", "django"], 10, 3.0),
}


def deploy_uwsgi_argv(env, port):
    venv = env.args.venv
    return (
        f"{venv}/bin/uwsgi --socket 127.0.0.1:{port} --chdir {DJANGO_DIR} "
        f"--module djangoblog.wsgi:application --master --processes {env.args.uwsgi_processes} "
        f"--need-app --die-on-term --buffer-size 65535 --disable-logging "
        f"--binary-path {venv}/bin/python3"
    )


def deploy_env_line(env):
    db = os.path.join(env.work, "db.sqlite3")
    return (
        f'environment = DJANGO_SETTINGS_MODULE="djangoblog.settings",UWGATE_TEST_DB="{db}",'
        f'PYTHONDONTWRITEBYTECODE="1",PYTHONUNBUFFERED="1"'
    )


def deploy_uwgate(env, tag):
    """uwgate with its control socket, `uwsgi_program = django` and its own supervised uWSGI."""
    up = free_port()
    port = free_port()
    d = os.path.join(env.work, f"uwgate-{tag}")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    ini = os.path.join(d, "uwgate.ini")
    with open(ini, "w") as f:
        f.write(
            f"""; uwgate side of `make bench` scenario 12 (generated)
[uwgate]
temp_path = {d}/tmp
syslog = stderr
access_log = off
error_log_level = warn
control_socket = {d}/uwgate.sock

[server]
listen = 127.0.0.1:{port}

[location:/]
uwsgi_pass = 127.0.0.1:{up}
uwsgi_program = django

[program:django]
command = {deploy_uwsgi_argv(env, up)}
{deploy_env_line(env)}
stopsignal = INT
stopasgroup = true
ready = tcp:127.0.0.1:{up}
"""
        )
    errlog = open(os.path.join(d, "stderr.log"), "wb")
    p = spawn(f"uwgate-{tag}", [env.args.bin, "-f", "-c", ini], stdout=errlog, stderr=subprocess.STDOUT)
    return {"proc": p, "port": port, "ctl": [env.args.bin, "ctl", "-s", f"{d}/uwgate.sock"],
            "dir": d, "logs": [errlog]}  # fmt: skip


def deploy_nginx_supervisord(env, tag):
    """nginx in front of a uWSGI that supervisord runs (with its unix socket for supervisorctl)."""
    up = free_port()
    port = free_port()
    d = os.path.join(env.work, f"supervisord-{tag}")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(
            f"""; supervisord side of `make bench` scenario 12 (generated)
[supervisord]
nodaemon = true
logfile = {d}/supervisord.log
pidfile = {d}/supervisord.pid
childlogdir = {d}
loglevel = warn

[unix_http_server]
file = {d}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{d}/supervisor.sock

[program:django]
command = {deploy_uwsgi_argv(env, up)}
{deploy_env_line(env)}
stopsignal = INT
stopasgroup = true
stdout_logfile = {d}/django.log
redirect_stderr = true
"""
        )
    slog = open(os.path.join(d, "stderr.log"), "wb")
    sup = spawn(f"supervisord-{tag}", [env.args.supervisord, "-n", "-c", conf], stdout=slog,
                stderr=subprocess.STDOUT)  # fmt: skip
    saved = env.uwsgi_port
    env.uwsgi_port = up
    path, nd = nginx_conf(env, port, tag)
    env.uwsgi_port = saved
    nlog = open(os.path.join(nd, "stderr.log"), "wb")
    ngx = spawn(f"nginx-{tag}", [env.args.nginx, "-p", nd + "/", "-e", nd + "/error.log", "-c", path],
                stdout=nlog, stderr=subprocess.STDOUT)  # fmt: skip
    ctl = [os.path.join(os.path.dirname(env.args.supervisord), "supervisorctl"), "-c", conf]
    return {"proc": ngx, "sup": sup, "port": port, "ctl": ctl, "dir": d, "logs": [slog, nlog]}


def deploy_run(env, side, op, tag):
    """One side, one kind of deploy: wrk on Django `/` while the ops run; wrk's figures."""
    verb_u, verb_s, count, every = DEPLOY_OPS[op]
    s = deploy_uwgate(env, tag) if side == "uwgate" else deploy_nginx_supervisord(env, tag)
    try:
        wait_http_200(s["port"], "/", 90, s["proc"])
        duration = int(2 + count * every + 3)
        out = {}
        t = threading.Thread(target=lambda: out.update(wrk_deploy(s["port"], duration)))
        t.start()
        time.sleep(2)
        took = []
        for i in range(count):
            t0 = time.monotonic()
            argv = s["ctl"] + (verb_u if side == "uwgate" else verb_s)
            r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            took.append(time.monotonic() - t0)
            if r.returncode != 0:
                log(f"s12 {side} {op} {i + 1}: {' '.join(argv)} exited {r.returncode}: {r.stdout}{r.stderr}")
            left = every - (time.monotonic() - t0)
            if left > 0 and i + 1 < count:
                time.sleep(left)
        t.join()
        out["op_s"] = statistics.median(took)
        return out
    finally:
        stop(s["proc"], signal.SIGTERM if side == "uwgate" else signal.SIGQUIT)
        forget(s["proc"])
        if "sup" in s:
            stop(s["sup"])
            forget(s["sup"])
        for f in s["logs"]:
            f.close()


def wrk_deploy(port, duration):
    """wrk with a timeout long enough for a request that waits out a restart."""
    argv = ["wrk", "-t1", "-c20", f"-d{duration}s", "--timeout", "30s", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 90)
    txt = out.stdout + out.stderr
    r = {"requests": 0, "non2xx": 0, "socket": 0, "raw": txt}
    m = re.search(r"(\d+) requests in", txt)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", txt)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    if m:
        r["socket"] = sum(int(x) for x in m.groups())
    r["failed"] = r["non2xx"] + r["socket"]
    return r


def deploy_scenario(env, results, rounds):
    """Scenario 12: each side restarts (and, separately, gracefully reloads) its uWSGI under wrk."""
    for rnd in range(rounds):
        for op in DEPLOY_OPS:
            for side in ("uwgate", "nginx"):
                r = deploy_run(env, side, op, f"deploy{op}{rnd}")
                results.setdefault("s12" + op, {}).setdefault(side, []).append(r)
                log(
                    f"round {rnd + 1} s12 {op:7s} {side:6s} {r['requests']} requests, "
                    f"{r['failed']} failed ({r['non2xx']} non-2xx, {r['socket']} socket errors); "
                    f"one {op} took {r['op_s']:.1f} s"
                )


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


UPGRADE_CLIENTS_NEW = 4  # threads opening a new connection per request
UPGRADE_CLIENTS_KEEP = 2  # threads on keep-alive connections


def upgrade_request(port, path, sock=None):
    """One GET: on `sock` (keep-alive) or a new connection. Returns (outcome, t_start, t_first,
    server, sock): outcome "ok", "refused", "retry" (a reused connection closed before any byte
    of the answer: sent again, as HTTP lets a client) or "failed: why"; t_first is the first
    byte's time (perf_counter); sock is the connection to reuse (None when closed)."""
    t0 = time.perf_counter()
    reused = sock is not None
    try:
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        close = "" if reused or path != "/static/1k.bin" else "Connection: close\r\n"
        keep = reused or close == ""
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{close}\r\n".encode())
        data, t_first = b"", None
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            if t_first is None:
                t_first = time.perf_counter()
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and m and len(body) >= int(m.group(1)):
                break
        head = data.partition(b"\r\n\r\n")[0]
        server = re.search(rb"(?im)^server:\s*(\S+)", head)
        server = server.group(1).decode() if server else ""
        if not data and reused:
            sock.close()
            return "retry", t0, None, "", None
        if not re.match(rb"HTTP/1\.1 200 ", head):
            sock.close()
            return f"failed: {path} {head[:40]!r}", t0, t_first, server, None
        if not keep or re.search(rb"(?im)^connection:\s*close", head):
            sock.close()
            sock = None
        return "ok", t0, t_first, server, sock
    except ConnectionRefusedError:
        return "refused", t0, None, "", None
    except OSError as e:
        if sock is not None:
            sock.close()
        if reused and e.errno in (errno.ECONNRESET, errno.EPIPE):
            return "retry", t0, None, "", None
        return f"failed: {path} {e}", t0, None, "", None


def upgrade_load(port, stop, keep_alive, out):
    """A load thread: appends (outcome, t_start, t_first, server, new_connection) to `out`."""
    sock, k = None, 0
    while not stop.is_set():
        k += 1
        path = "/" if keep_alive and k % 2 else "/static/1k.bin"
        outcome, t0, t1, server, sock = upgrade_request(port, path, sock if keep_alive else None)
        out.append((outcome, t0, t1, server, not keep_alive or t1 is None))
        if outcome == "retry":
            k -= 1


def upgrade_scenario(env, results, rounds):
    """Scenario 11: `uwgate -s upgrade` under load, alternating between the shipped build and
    the upgrade-test build (another version string), `rounds` times. uwgate runs from a copy it
    can have replaced (as /usr/sbin/uwgate by a package), supervises a `sleep` (adopted, never
    respawned) and forwards `/` to the shared uWSGI."""
    builds = [env.args.bin, env.args.upgrade_bin]
    versions = [version_of([b, "--version"]) for b in builds]
    status = "\n[location:/uwgate_status]\nstub_status = on\n"
    sleeper = "\n[program:sleeper]\ncommand = sleep 3600\nstartsecs = 0\n"
    d = os.path.join(env.work, "upgrade-sbin")
    os.makedirs(d, exist_ok=True)
    installed = os.path.join(d, "uwgate")
    shutil.copyfile(builds[0], installed)
    os.chmod(installed, 0o755)
    srv = Server(env, "uwgate", "upgrade", programs=status + sleeper, binary=installed)
    wait_http_200(srv.port, "/", 60, srv.proc)
    child = sole_child(srv.proc.pid)
    stop_evt, out, threads = threading.Event(), [], []
    for i in range(UPGRADE_CLIENTS_NEW + UPGRADE_CLIENTS_KEEP):
        t = threading.Thread(target=upgrade_load, args=(srv.port, stop_evt, i < UPGRADE_CLIENTS_KEEP, out))
        t.start()
        threads.append(t)
    r = {"first": [], "delay": [], "before": [], "versions": versions}
    try:
        for i in range(rounds):
            new = (i + 1) % 2
            time.sleep(1.0)
            tmp = installed + ".new"
            shutil.copyfile(builds[new], tmp)
            os.chmod(tmp, 0o755)
            time.sleep(0.1)
            os.rename(tmp, installed)
            t_sig = time.perf_counter()
            subprocess.run([installed, "-c", os.path.join(srv.dir, "uwgate.ini"), "-s", "upgrade"],
                           check=True, capture_output=True, timeout=10)  # fmt: skip
            tag = f"uwgate/{versions[new]}"
            deadline = t_sig + 30
            while time.perf_counter() < deadline:
                firsts = [t1 for (o, t0, t1, sv, _) in list(out) if sv == tag and t1 and t1 > t_sig]
                if firsts:
                    break
                time.sleep(0.005)
            else:
                raise RuntimeError(f"s11: {tag} never answered after -s upgrade\n{srv.stderr()}")
            time.sleep(0.5)
            t_first = min(t1 for (o, t0, t1, sv, _) in list(out) if sv == tag and t1 and t1 > t_sig)
            window = [x for x in list(out) if x[4] and x[2] and x[1] <= t_first and x[2] >= t_sig]
            before = [x for x in list(out) if x[4] and x[2] and t_sig - 1.0 <= x[1] < t_sig]
            r["first"].append((t_first - t_sig) * 1e3)
            r["delay"].append(max((x[2] - x[1] for x in window), default=0) * 1e3)
            r["before"].append(max((x[2] - x[1] for x in before), default=0) * 1e3)
            log(f"s11 round {i + 1}: {versions[1 - new]} -> {versions[new]}: first answer after "
                f"{r['first'][-1]:.1f} ms, longest new-connection wait {r['delay'][-1]:.1f} ms "
                f"({r['before'][-1]:.1f} ms in the second before)")  # fmt: skip
    finally:
        stop_evt.set()
        for t in threads:
            t.join(timeout=15)
        try:
            kept = sole_child(srv.proc.pid, timeout=2) if srv.proc.poll() is None else None
        except RuntimeError:
            kept = None
        srv.stop()
    outcomes = [x[0] for x in out]
    r.update(
        requests=sum(o == "ok" for o in outcomes),
        refused=outcomes.count("refused"),
        failed=[o for o in outcomes if o.startswith("failed")],
        retried=outcomes.count("retry"),
        child_kept=kept == child,
    )
    results["s11"] = r
    log(f"s11: {r['requests']:,} answers, {r['refused']} refused, {len(r['failed'])} failed, "
        f"{r['retried']} retried; supervised child kept: {r['child_kept']}")  # fmt: skip


def fmt(x, nd=1):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def verdict(ratio, bar, higher_is_better):
    if ratio is None or bar is None:
        return ""
    ok = ratio >= bar if higher_is_better else ratio <= bar
    return "pass" if ok else "**FAIL**"


def build_rows(env, res):
    rows = []  # scenario, figure, uwgate, other, ratio, bar text, verdict

    def ratio_row(scen, figure, key, bar, higher, nd=1, other="nginx", scale=1.0):
        if scen not in res:
            return
        u = median([r[key] for r in res[scen]["uwgate"]])
        n = median([r[key] for r in res[scen][other]])
        u = u * scale if u is not None else None
        n = n * scale if n is not None else None
        ratio = u / n if u is not None and n else None
        bar_txt = "" if bar is None else (f"≥ {bar:.2f}×" if higher else f"≤ {bar:.2f}×")
        rows.append([figure[0], figure[1], fmt(u, nd), fmt(n, nd), fmt(ratio, 2) + "×" if ratio else "—",
                     bar_txt, verdict(ratio, bar, higher)])  # fmt: skip

    ratio_row("s1", ("1. 1 KiB static, 50 conns", "req/s"), "rps", 1.3, True, 0)
    ratio_row("s1", ("", "p99 latency, ms"), "p99", 1.0, False, 2)
    ratio_row("s1", ("", "server CPU, µs/request"), "cpu_us", None, False, 1)
    ratio_row("s2", ("2. 100 KiB static, 20 conns", "req/s"), "rps", 1.0, True, 0)
    ratio_row("s2", ("", "server CPU, µs/request"), "cpu_us", None, False, 1)
    ratio_row("s2d", ("", "req/s, discarding client"), "rps", 1.0, True, 0)
    ratio_row("s3", ("3. 10 MiB static, 4 conns", "MiB/s"), "bps", 1.0, True, 0, scale=1 / 2**20)
    ratio_row("s3", ("", "server CPU, µs/request"), "cpu_us", None, False, 0)
    ratio_row("s3d", ("", "MiB/s, discarding client"), "bps", 1.0, True, 0, scale=1 / 2**20)
    ratio_row("s4", ("4. Django `/` via uWSGI, 20 conns", "req/s"), "rps", 1.0, True, 0)
    ratio_row("s4", ("", "p99 latency, ms"), "p99", 1.0, False, 2)
    ratio_row("s4", ("", "server CPU, µs/request"), "cpu_us", None, False, 1)
    if "s5" in res:
        n = env.idle_n
        ratio_row("s5", (f"5. {n:,} idle keep-alive conns", "server RSS, MiB"), "rss", 0.5, False, 1,
                  scale=1 / 1024)  # fmt: skip
        ratio_row("s5", ("", "RSS before them, MiB"), "base", None, False, 1, scale=1 / 1024)
        per = {s: median([(r["rss"] - r["base"]) * 1024 / n for r in res["s5"][s]]) for s in SIDES}
        rows.append(["", "RSS per idle conn, bytes", fmt(per["uwgate"], 0), fmt(per["nginx"], 0),
                     fmt(per["uwgate"] / per["nginx"], 2) + "×" if per["nginx"] else "—", "", ""])  # fmt: skip
        fresh = {s: all(r["fresh"] for r in res["s5"][s]) for s in SIDES}
        kept = {s: min(r["kept"] for r in res["s5"][s]) for s in SIDES}
        rows.append(["", "fresh client served (every round)", "yes" if fresh["uwgate"] else "NO",
                     "yes" if fresh["nginx"] else "NO", "", "yes",
                     "pass" if fresh["uwgate"] else "**FAIL**"])  # fmt: skip
        rows.append(["", "idle conns still open (min)", f"{kept['uwgate']:,}", f"{kept['nginx']:,}",
                     "", "", ""])  # fmt: skip
    if "s6" in res:
        u = median(res["s6"]["uwgate"])
        s = median(res["s6"]["supervisord"])
        rows.append(["6. crash → respawn (vs **supervisord**)", f"median of {len(res['s6']['uwgate'])}, ms",
                     fmt(u, 2), fmt(s, 1), fmt(u / s, 3) + "×", "≤ 5 ms",
                     "pass" if u <= 5 else "**FAIL**"])  # fmt: skip
        rows.append(["", "max, ms", fmt(max(res["s6"]["uwgate"]), 2),
                     fmt(max(res["s6"]["supervisord"]), 1), "", "", ""])  # fmt: skip
    if "s7" in res:
        r = res["s7"]
        mib = r["size"] / 2**20
        rows.append(["7. stripped static binary", "size, MiB", f"{mib:.3f}",
                     f"{r['nginx_size'] / 2**20:.3f} (dyn.)", "", "≤ 1 MiB",
                     "pass" if r["size"] <= 2**20 else "**FAIL**"])  # fmt: skip
        u = median(r["start"]["uwgate"])
        n = median(r["start"]["nginx"])
        rows.append(["", f"cold start → first 200, ms (median of {len(r['start']['uwgate'])})",
                     fmt(u, 1), fmt(n, 1), fmt(u / n, 2) + "×", "", ""])  # fmt: skip
    for key, label, fig in (
        ("s8", "8. syscalls/request", "1 KiB, 1 keep-alive conn"),
        ("s8b", "", "1 KiB, wrk -c50"),
        ("s8c", "", "Django `/`, 1 keep-alive conn"),
    ):
        if key not in res:
            continue
        per = {s: median([sum(c.values()) / max(1, n) for c, n in res[key][s]]) for s in SIDES}
        rows.append([label, fig, fmt(per["uwgate"], 2), fmt(per["nginx"], 2),
                     fmt(per["uwgate"] / per["nginx"], 2) + "×", "", ""])  # fmt: skip
    for key, label in SLOW_ATTACKS:
        k = "s10" + key
        if k not in res:
            continue
        fig = {f: {s: median([r[f] for r in res[k][s]]) for s in SIDES} for f in ("success", "p50", "p99", "rss", "held_min")}  # fmt: skip

        def ratio(f):
            u, n = fig[f]["uwgate"], fig[f]["nginx"]
            return fmt(u / n, 2) + "×" if u is not None and n else "—"

        ok_success = fig["success"]["uwgate"] >= SLOW_TARGET_SUCCESS
        ok_p99 = fig["p99"]["uwgate"] <= SLOW_TARGET_P99_MS
        budget = max(r["budget"] for r in res[k]["uwgate"])
        ok_rss = all(r["rss"] <= r["budget"] and r["data_max"] <= r["data0"] for r in res[k]["uwgate"])
        rows.append([f"10. {env.slow_conns:,} {label}", "probe success, % (static + Django)",
                     fmt(fig["success"]["uwgate"], 1), fmt(fig["success"]["nginx"], 1), "",
                     f"≥ {SLOW_TARGET_SUCCESS:.0f} %", "pass" if ok_success else "**FAIL**"])  # fmt: skip
        rows.append(["", "probe p50, ms", fmt(fig["p50"]["uwgate"], 2), fmt(fig["p50"]["nginx"], 2),
                     ratio("p50"), "", ""])  # fmt: skip
        rows.append(["", "probe p99, ms", fmt(fig["p99"]["uwgate"], 2), fmt(fig["p99"]["nginx"], 2),
                     ratio("p99"), f"≤ {SLOW_TARGET_P99_MS:.0f} ms", "pass" if ok_p99 else "**FAIL**"])  # fmt: skip
        rows.append(["", "server RSS max during the attack, MiB", fmt(fig["rss"]["uwgate"] / 1024, 1),
                     fmt(fig["rss"]["nginx"] / 1024, 1), ratio("rss"),
                     f"≤ {budget / 1024:.1f} (budget)", "pass" if ok_rss else "**FAIL**"])  # fmt: skip
        rows.append(["", "attack connections established (min)", fmt(fig["held_min"]["uwgate"], 0),
                     fmt(fig["held_min"]["nginx"], 0), "", "", ""])  # fmt: skip
    if "s11" in res:
        r = res["s11"]
        n = len(r["first"])
        clean = r["refused"] == 0 and not r["failed"] and r["child_kept"]
        rows.append(["11. in-place upgrade under load", f"-s upgrade → new version's first answer, ms (median of {n})",
                     fmt(median(r["first"]), 1), "—", "", "", ""])  # fmt: skip
        rows.append(["", "max, ms", fmt(max(r["first"]), 1), "—", "", "", ""])
        rows.append(["", "longest new-connection wait around it, ms (max)", fmt(max(r["delay"]), 1),
                     "—", "", "", ""])  # fmt: skip
        rows.append(["", "longest new-connection wait, the second before, ms (max)",
                     fmt(max(r["before"]), 1), "—", "", "", ""])  # fmt: skip
        rows.append(["", "refused / failed / keep-alive retried; child kept",
                     f"{r['refused']} / {len(r['failed'])} / {r['retried']}; "
                     + ("yes" if r["child_kept"] else "NO"), "—", "", "0 / 0; yes",
                     "pass" if clean else "**FAIL**"])  # fmt: skip
    for op, label in (("restart", "12. 3 restarts of uWSGI under wrk -c20"),
                      ("reload", "12. 10 graceful uWSGI reloads under wrk -c20")):
        k = "s12" + op
        if k not in res:
            continue
        failed = {s: sum(r["failed"] for r in res[k][s]) for s in SIDES}
        reqs = {s: sum(r["requests"] for r in res[k][s]) for s in SIDES}
        rows.append([label + " (vs nginx + **supervisord**)", "failed requests (non-2xx + socket errors)",
                     f"{failed['uwgate']:,}", f"{failed['nginx']:,}", "", "0",
                     "pass" if failed["uwgate"] == 0 else "**FAIL**"])  # fmt: skip
        rows.append(["", "requests served", f"{reqs['uwgate']:,}", f"{reqs['nginx']:,}", "", "", ""])
    if "s9" in res:
        for i, (label, n, reqs) in enumerate(res["s9"]["loads"]):
            rows.append(["9. heap allocations (count-alloc build)" if i == 0 else "",
                         f"{label}: allocations / requests", f"{n:,} / {reqs:,}", "—", "",
                         "0 per request", "pass" if n == 0 else "**FAIL**"])  # fmt: skip
    return rows


def syscall_breakdown(res, key):
    out = []
    if key not in res:
        return out
    for side in SIDES:
        calls, n = res[key][side][-1]
        top = sorted(calls.items(), key=lambda kv: -kv[1])
        parts = [f"{name} {c / n:.2f}" for name, c in top if c / n >= 0.005]
        out.append(f"- {side}: " + ", ".join(parts))
    return out


def render(env, res, meta):
    rows = build_rows(env, res)
    head = ["scenario", "figure", "uwgate", "nginx", "uwgate/nginx", "bar", "verdict"]
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]

    def line(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"

    table = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    table += [line(r) for r in rows]
    md = [
        "# `make bench` — uwgate vs nginx (+ supervisord)",
        "",
        "Written by `bench/bench.py` (run `make bench`); the latest run is committed.",
        "",
        f"- date: {meta['date']}",
        f"- CPU: {meta['cpu']}, {meta['cores']} cores (the load generator shares them)",
        f"- kernel: {meta['kernel']}",
        f"- uwgate: {meta['uwgate']} ({meta['bin']}); nginx: {meta['nginx']}; wrk: {meta['wrk']}; "
        f"supervisord: {meta['supervisord']}; uWSGI backend: pyuwsgi, {env.args.uwsgi_processes} "
        f"workers, Django test app",
        f"- rounds: {env.args.rounds} for scenarios 1–4 (A B A B, wrk -t1 -d{env.args.duration}s), "
        f"{env.args.slow_rounds} for 5 and 8; figures are medians over the rounds; ratio = uwgate / "
        f"nginx (scenario 6: / supervisord). Server CPU = on-CPU time of the server's processes "
        f"(/proc/PID/task/*/schedstat) over the run ÷ requests: the figure least disturbed by a "
        f"load generator and other work sharing the cores",
        f"- worker_connections: uwgate {env.worker_connections}, nginx {env.nginx_connections} (nginx "
        f"starts closing idle keep-alive connections when fewer than 1/16 of its slots are free); "
        f"RLIMIT_NOFILE hard {env.nofile}",
        "",
    ]
    md += table
    md += [""]
    md += meta["notes"]
    if "s8" in res:
        md += ["", "System calls per request (1 KiB, one keep-alive connection, last round):"]
        md += syscall_breakdown(res, "s8")
        md += ["", "Under wrk -c50 (per request wrk counted, last round):"]
        md += syscall_breakdown(res, "s8b")
        md += ["", "Django `/` through uWSGI, one keep-alive connection (last round):"]
        md += syscall_breakdown(res, "s8c")
    md += ["", "Per-round values:", "", "```"]
    for key in ("s1", "s2", "s3", "s4"):
        if key in res:
            for side in SIDES:
                vals = res[key][side]
                md.append(
                    f"{key} {side:6s} req/s " + " ".join(f"{r['rps']:.0f}" for r in vals)
                    + "  MiB/s " + " ".join(f"{r['bps'] / 2**20:.1f}" for r in vals)
                    + "  p99 ms " + " ".join(f"{r['p99']:.2f}" for r in vals)
                    + "  CPU us/req " + " ".join(f"{r['cpu_us']:.1f}" for r in vals)
                    + "  errors " + " ".join(str(r["errors"]) for r in vals)
                )  # fmt: skip
        if key + "d" in res:
            for side in SIDES:
                vals = res[key + "d"][side]
                md.append(
                    f"{key} {side:6s} discarding client: req/s " + " ".join(f"{r['rps']:.0f}" for r in vals)
                    + "  MiB/s " + " ".join(f"{r['bps'] / 2**20:.1f}" for r in vals)
                    + "  errors " + " ".join(str(r["errors"]) for r in vals)
                )  # fmt: skip
    if "s5" in res:
        for side in SIDES:
            md.append(f"s5 {side:6s} RSS KiB " + " ".join(f"{r['base']}->{r['rss']}" for r in res["s5"][side]))
    if "s6" in res:
        for side, vals in res["s6"].items():
            md.append(f"s6 {side:11s} ms " + " ".join(f"{v:.2f}" for v in vals))
    if "s7" in res:
        for side, vals in res["s7"]["start"].items():
            md.append(f"s7 {side:6s} cold start ms " + " ".join(f"{v:.1f}" for v in vals))
    for key, _label in SLOW_ATTACKS:
        if "s10" + key not in res:
            continue
        for side in SIDES:
            for r in res["s10" + key][side]:
                kinds = "  ".join(
                    f"{kind} {q['ok']}/{q['n']} p50 {q['p50']:.2f} p99 {q['p99']:.2f}"
                    for kind, q in r["kinds"].items()
                )
                budget = (
                    f" budget (VmSize) {r['budget']} max {r['vm_max']}, VmData {r['data0']} max "
                    f"{r['data_max']}, VmStk max {r['stk_max']}" if r["budget"] else ""
                )
                md.append(
                    f"s10 {key:7s} {side:6s} probes {r['ok']}/{r['n']}  {kinds}  RSS KiB "
                    f"{r['base']}->{r['rss']}{budget}  attack conns {r['held_min']}-{r['held_max']} "
                    f"ramp {r['ramp']:.1f} s"
                )
    for op in DEPLOY_OPS:
        for side in SIDES:
            for r in res.get("s12" + op, {}).get(side, []):
                md.append(
                    f"s12 {op:7s} {side:6s} requests {r['requests']} failed {r['failed']} "
                    f"(non-2xx {r['non2xx']}, socket errors {r['socket']}), one {op} {r['op_s']:.1f} s"
                )
    md += ["```", ""]
    return table, "\n".join(md)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def version_of(argv, pattern=r"[\d][\w.\-+]*"):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        m = re.search(pattern, r.stdout + r.stderr)
        return m.group(0) if m else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the uwgate binary")
    ap.add_argument("--venv", required=True, help="virtualenv with pyuwsgi and Django")
    ap.add_argument("--supervisord", required=True, help="the supervisord to compare with")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--results", help="write the table (markdown) here")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of scenarios 1-4 (A B A B)")
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    ap.add_argument("--slow-rounds", type=int, default=3, help="rounds of scenarios 5 and 8")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections in scenario 5")
    ap.add_argument("--respawns", type=int, default=20)
    ap.add_argument("--cold-starts", type=int, default=9)
    ap.add_argument("--syscall-requests", type=int, default=10000)
    ap.add_argument("--uwsgi-processes", type=int, default=2)
    ap.add_argument("--alloc-bin", help="uwgate built with --features count-alloc (scenario 9)")
    ap.add_argument("--loadgen", help="examples/loadgen.rs built: scenarios 2 and 3 again with it")
    ap.add_argument("--slow-peers-conns", type=int, default=3000,
                    help="scenario 10: connections of each slowhttptest attack")
    ap.add_argument("--slow-peers-duration", type=int, default=30,
                    help="scenario 10: seconds of probing per attack and server, once the attack's "
                         "connections are established")
    ap.add_argument("--slow-peers-rounds", type=int, default=1, help="scenario 10: rounds (A B A B)")
    ap.add_argument("--slow-peers-rate", type=int, default=1000,
                    help="scenario 10: new attack connections per second (slowhttptest -r)")
    ap.add_argument("--slow-peers-probe-interval", type=float, default=0.5)
    ap.add_argument("--slow-peers-probe-timeout", type=float, default=2.0)
    ap.add_argument("--upgrade-bin", help="the upgrade-test build (scenario 11: the other version)")
    ap.add_argument("--upgrade-rounds", type=int, default=6, help="scenario 11: upgrades (A→B→A…)")
    ap.add_argument("--deploy-rounds", type=int, default=1, help="scenario 12: rounds (A B)")
    ap.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10,11,12",
                    help="scenarios to run: digits (`--only 145`) or a comma-separated list "
                         "(`--only 1,10`); `--only 10` is scenario 10 alone (default all)")
    args = ap.parse_args()
    if "," in args.only or args.only in ("10", "11", "12"):
        args.only = {x.strip() for x in args.only.split(",") if x.strip()}
    else:
        args.only = set(args.only)
    args.bin = os.path.abspath(args.bin)
    args.venv = os.path.abspath(args.venv)
    args.supervisord = os.path.abspath(args.supervisord)
    if args.alloc_bin:
        args.alloc_bin = os.path.abspath(args.alloc_bin)
    if args.loadgen:
        args.loadgen = os.path.abspath(args.loadgen)
    if args.upgrade_bin:
        args.upgrade_bin = os.path.abspath(args.upgrade_bin)
    # What the selected scenarios use (all of it for a whole `make bench`).
    tools = {"wrk": ["1", "2", "3", "4", "8", "9", "12"], "strace": "8", "slowhttptest": ["10"]}
    for tool, scenarios in tools.items():
        if any(x in args.only for x in scenarios) and not shutil.which(tool):
            sys.exit(f"bench: {tool} not found (make bench installs it)")
    paths = [args.bin, args.nginx, os.path.join(args.venv, "bin", "uwsgi")]
    if "6" in args.only or "12" in args.only:
        paths.append(args.supervisord)
    if "12" in args.only:
        paths.append(os.path.join(os.path.dirname(args.supervisord), "supervisorctl"))
    for path in paths:
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} is missing or not executable")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    work = tempfile.mkdtemp(prefix="uwgate-bench-")
    os.chmod(work, 0o755)
    t_start = time.monotonic()
    res, notes = {}, []
    try:
        env = Env(args, work)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # uwgate wants worker_connections + 2 × buffer_pool (256) + open_file_cache (1000) + 64
        # descriptors (src/main.rs): raise the hard limit if we may (CAP_SYS_RESOURCE), else size
        # worker_connections to what the hard limit allows.
        # Scenario 10's client, slowhttptest, needs a descriptor per attack connection too (it
        # silently caps its connections at its soft limit less 6): it inherits the limit set here.
        overhead = 2 * 256 + 1000 + 64
        want = max(args.idle, args.slow_peers_conns) + 100 + overhead
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        env.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        env.worker_connections = min(args.idle + 100, env.nofile - overhead)
        env.idle_n = min(args.idle, env.worker_connections - 50)
        env.slow_conns = min(args.slow_peers_conns, env.worker_connections - 100, env.nofile - 100)
        if "10" in args.only and env.slow_conns < args.slow_peers_conns:
            msg = (
                f"Scenario 10 ran with {env.slow_conns:,} attack connections, not "
                f"{args.slow_peers_conns:,}: RLIMIT_NOFILE here is {env.nofile} (hard, cannot be "
                f"raised) and both slowhttptest and the servers need a descriptor per connection."
            )
            notes.append("Note: " + msg)
            log(msg)
        # nginx closes idle keep-alive connections once fewer than 1/16 of its slots are free
        # (ngx_drain_connections): give it the headroom to hold all of scenario 5's.
        env.nginx_connections = env.worker_connections * 9 // 8 + 100
        if env.idle_n < args.idle:
            msg = (
                f"Scenario 5 ran with {env.idle_n:,} idle connections, not {args.idle:,}: the hard "
                f"RLIMIT_NOFILE here is {env.nofile} and cannot be raised (no CAP_SYS_RESOURCE), and "
                f"uwgate refuses to start unless it can have worker_connections + 1,576 descriptors "
                f"(src/main.rs), so worker_connections is {env.worker_connections} on both sides; "
                f"nginx alone could hold 10,000 here."
            )
            notes.append("Note: " + msg)
            log(msg)
        make_static(env.static)

        log("starting the uWSGI backend (shared by both sides)")
        uw = start_uwsgi(env)
        servers = {side: Server(env, side, "main") for side in SIDES}
        for side in SIDES:
            wait_http_200(servers[side].port, "/", 90, uw)
        for side in SIDES:  # the same bytes from both
            for name, size in SIZES.items():
                st, n = http_get(servers[side].port, "/static/" + name)
                if (st, n) != (200, size):
                    raise RuntimeError(f"{side}: /static/{name} gave {st} with {n} bytes")
        log(f"servers up: uwgate :{servers['uwgate'].port}, nginx :{servers['nginx'].port}, "
            f"uWSGI :{env.uwsgi_port}")  # fmt: skip

        if any(c in args.only for c in "1234"):
            load_scenarios(env, servers, res, args.rounds, args.duration)
        if "8" in args.only:
            syscall_scenario(env, servers, res, args.slow_rounds, args.syscall_requests, 3)
        for side in SIDES:
            servers[side].stop()
        if "9" in args.only:
            if args.alloc_bin:
                alloc_scenario(env, res, args.duration)
            else:
                log("s9 skipped: no --alloc-bin")
        if "5" in args.only:
            idle_scenario(env, res, args.slow_rounds)
        if "6" in args.only:
            respawn_scenario(env, res, args.respawns)
        if "7" in args.only:
            binary_scenario(env, res, args.cold_starts)
        if "10" in args.only:
            slow_peers_scenario(env, res, args.slow_peers_rounds, args.slow_peers_duration)
        if "11" in args.only:
            if args.upgrade_bin:
                upgrade_scenario(env, res, args.upgrade_rounds)
            else:
                log("s11 skipped: no --upgrade-bin")
        if "12" in args.only:
            deploy_scenario(env, res, args.deploy_rounds)

        if "s7" in res:
            r = res["s7"]
            notes.append(
                f"Scenario 7: {r['size']:,} bytes after `strip` ({r['size_as_built']:,} as built: "
                f"{r['file']}); nginx's {r['nginx_size']:,} is a dynamically linked binary "
                f"without its shared libraries, shown for scale only."
            )
        if "s6" in res:
            notes.append(
                "Scenario 6: SIGKILL to the supervised `sleep`, then /proc/loadavg's newest pid is "
                "polled until a process whose parent is the supervisor appears (fork, not exec). "
                "Each kill waits until the child has lived 1.3 s (startsecs = 1, and uwgate spawns "
                "a program at most once a second)."
            )
        if "s5" in res:
            notes.append(
                "Scenario 5: fresh servers each round; RSS = VmRSS of uwgate, or of nginx's master "
                "plus worker, 1 s after the last connection's response. `still open` counts idle "
                "connections the server had not closed when the fresh client was done."
            )
        if "s8" in res:
            notes.append(
                "Scenario 8: `strace -c -f -p` on uwgate / the nginx worker, attached after a warm "
                f"connection, over {args.syscall_requests:,} sequential keep-alive GETs of the 1 KiB "
                "file (so every request also waits in epoll), over 3 s of wrk -c50, and over "
                f"{args.syscall_requests // 10:,} sequential keep-alive GETs of the Django view."
            )
        if "s11" in res:
            r = res["s11"]
            notes.append(
                f"Scenario 11 (issue 14): uwgate runs from a copy of the binary that the scenario "
                f"replaces (a new file renamed over it, as a package does) with the other of "
                f"{r['versions'][0]} and {r['versions'][1]} (the `upgrade-test` build) before each of "
                f"{len(r['first'])} `uwgate -s upgrade`s, while {UPGRADE_CLIENTS_NEW} threads GET "
                f"/static/1k.bin on a new connection each and {UPGRADE_CLIENTS_KEEP} alternate the "
                f"Django view and the file on keep-alive connections (Python clients: their own "
                f"scheduling is in the figures). First answer = the first response whose `Server:` "
                f"names the new version, after the signal. New-connection wait = connect to the "
                f"answer's first byte, for requests begun before that first answer and answered "
                f"after the signal: the accept-queue time during the drain, exec and take-over. "
                f"A keep-alive connection closed idle by the drain before any byte of an answer is "
                f"retried on a new one (RFC 9112 §9.3.1) and counted apart. Child kept = the "
                f"supervised `sleep` has the same pid at the end. uwgate only: nginx's binary "
                f"upgrade (USR2, WINCH, QUIT by hand) runs a second master and is not comparable."
            )
        if "s9" in res:
            notes.append(
                "Scenario 9: the same build with `--features count-alloc` (a counting global "
                "allocator; src/sys/alloc_count.rs), under wrk for "
                f"{args.duration} s per load after a 1 s warm-up; the count is read from the JSON "
                "status page before and after, less what one read of the page costs "
                f"({res['s9']['probe']}). Start-up made {res['s9']['startup']:,} (the counter works). "
                "The paths wrk does not take run on one keep-alive connection each, on a server of "
                "their own (open_file_cache = 4, so 64 files are mostly missed; a uwsgi location on "
                "uWSGI's unix socket; one whose upstream refuses connects), after one warm-up "
                "request: a 100 KiB POST spooled to temp_path, a 2 MB answer to a reader with a "
                "4 KiB receive buffer (spooled), three ranges of a file (multipart/byteranges)."
            )
        if any("s10" + a[0] in res for a in SLOW_ATTACKS):
            slow_version = version_of(["slowhttptest", "-h"], r"(?<=version )[\d.]+")
            notes.append(
                f"Scenario 10 (issue 11 §1): fresh servers for each attack (the same uWSGI backend, "
                f"uwgate's and nginx's usual configs above, nginx with 1 worker), "
                f"{args.slow_peers_rounds} round(s) A B per attack. slowhttptest "
                f"{slow_version} opens "
                f"{env.slow_conns:,} connections at {args.slow_peers_rate}/s for slow headers (`-H -i 10 "
                f"-x 24` to `/`) and slow bodies (`-B -i 10 -x 24 -s 8192` to `/`); slow readers are "
                f"bench/slowread.py: the same number of connections, each asking for "
                f"{SLOW_READ_PATH} with SO_RCVBUF 1024 and an MSS of 536 and taking 32 bytes every "
                f"5 s (slowhttptest -X on loopback's 64 KiB MSS costs ~3 MiB of kernel memory per "
                f"connection before the server is held at all: 3,000 of them would run the whole "
                f"machine into net.ipv4.tcp_mem). Once the attack's connections are established (counted in /proc/net/tcp), a probe "
                f"fetches /static/1k.bin and the Django page `/` on fresh connections every "
                f"{args.slow_peers_probe_interval} s for {args.slow_peers_duration} s, each with a "
                f"{args.slow_peers_probe_timeout} s deadline. Success = a whole 200 within it; a "
                f"failed probe counts as the deadline in p50/p99 (nearest rank, both probes pooled). "
                f"RSS = VmRSS (nginx: master plus worker), sampled every 0.1 s. uwgate's budget = "
                f"its VmSize after start (buffers, slots and caches are allocated then): it passes "
                f"if its RSS stays below that and its VmData (heap and anonymous maps) does not "
                f"grow during the attack. The attack needs a client descriptor per "
                f"connection: this script raises RLIMIT_NOFILE to its hard limit, which "
                f"slowhttptest inherits. On a shared 2-core machine these figures are indicative."
            )
        if any("s12" + op in res for op in DEPLOY_OPS):
            notes.append(
                "Scenario 12 (issue 13): each side runs its own supervised pyuwsgi (the same "
                f"command: {args.uwsgi_processes} workers, `--binary-path` the virtualenv's python so "
                "that a SIGHUP reload can re-exec it, stopsignal INT with stopasgroup); wrk -t1 -c20 "
                "--timeout 30s on Django `/` for the whole run, 2 s before the first deploy and 3 s "
                "after the last. Restarts: `uwgate ctl restart django` (uwgate: `uwsgi_program = "
                "django`, `ready = tcp:` the uWSGI socket) against `supervisorctl restart django` "
                "(nginx plain `uwsgi_pass`), one every 6 s. Reloads: `uwgate ctl reload-program "
                "django` against `supervisorctl signal HUP django`, one every 3 s. Failed = wrk's "
                "non-2xx/3xx responses plus its socket errors (connect, read, write, timeout)."
            )
        if "s2d" in res or "s3d" in res:
            notes.append(
                "Scenarios 2 and 3, discarding client: the same rounds (A B after wrk's A B) with "
                "examples/loadgen.rs, one thread on epoll that throws response bodies away in the "
                "kernel (recv with MSG_TRUNC). wrk copies every body byte; with 100 KiB and 10 MiB "
                "bodies that copy fills the core it shares with the server, so wrk's figure is the "
                "client's ceiling, which both servers reach. With the copy gone the servers set "
                "the rate."
            )
        errs = [f"{k} {s}" for k in ("s1", "s2", "s3", "s4", "s2d", "s3d") if k in res for s in SIDES
                if any(r["errors"] for r in res[k][s])]  # fmt: skip
        if errs:
            notes.append("wrk reported non-2xx responses or socket errors in: " + ", ".join(errs))

        meta = {
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "uwgate": version_of([args.bin, "--version"]),
            "bin": os.path.relpath(args.bin, REPO) if args.bin.startswith(REPO) else args.bin,
            "nginx": version_of([args.nginx, "-v"], r"nginx/[\d.]+"),
            "wrk": version_of(["wrk", "-v"], r"(?<=wrk )\S+"),
            "supervisord": version_of([args.supervisord, "--version"]),
            "notes": notes,
        }
        table, md = render(env, res, meta)
        print()
        print("\n".join(table))
        print()
        for n in notes:
            print(n)
        if "s8" in res:
            print("\nsyscalls per request (1 conn):")
            print("\n".join(syscall_breakdown(res, "s8")))
            print("syscalls per request (wrk -c50):")
            print("\n".join(syscall_breakdown(res, "s8b")))
            print("syscalls per request (Django, 1 conn):")
            print("\n".join(syscall_breakdown(res, "s8c")))
        if args.results:
            with open(args.results, "w") as f:
                f.write(md)
            log(f"wrote {args.results}")
        log(f"done in {time.monotonic() - t_start:.0f} s")
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
