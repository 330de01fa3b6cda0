"""Processes the benchmark starts and stops: servers that follow the
samples' contract (`--port 0`, print "listening on port N", exit when
standard input ends), nginx, and what /proc says about them."""

import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg, code=1):
    log(f"bench.py: {msg}")
    sys.exit(code)


def raise_fd_limit(cap=65536):
    """The soft descriptor limit up to the hard one (at most `cap`), for the
    client and every server started from here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def wine_env(prefix_name):
    """Wine's environment for a private prefix under build/win64."""
    os.environ["WINEDEBUG"] = "-all"
    os.environ["WINEPREFIX"] = os.path.join(TOP, "build", "win64", prefix_name)
    os.environ["WINEPATH"] = "Z:" + TOP.replace("/", "\\") + "\\build\\win64"


def pinned(argv, cpus):
    """argv run on the processors `cpus` (taskset's list), or as is."""
    return (["taskset", "-c", cpus] + argv) if cpus else argv


def read_line(f, timeout):
    """The first line `f` (a pipe) gives within `timeout` seconds, without
    its line end ("" on end of file or time-out)."""
    fd, buf, end = f.fileno(), b"", time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        b = os.read(fd, 1)
        if not b:
            break
        buf += b
    return buf.decode(errors="replace").strip()  # Wine ends it with CR LF


def _drain(f):
    try:
        while os.read(f.fileno(), 65536):
            pass
    except OSError:
        pass


class Server:
    """One server following the samples' contract, on port 0."""

    def __init__(self, label, argv, errlog, timeout=60, env=None):
        self.label = label
        self.proc = subprocess.Popen(argv + ["--port", "0"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=errlog, env=env)
        self.pid = self.proc.pid
        line = read_line(self.proc.stdout, timeout)
        words = line.split()
        if not line.startswith("listening on port ") or not words[-1].isdigit():
            self.stop()
            raise RuntimeError(f"{label} did not start (got {line!r})")
        self.port = int(words[-1])
        threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()

    def stop(self):
        """Closes its standard input; kills it (by its own pid) when it has not
        exited 10 s later."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                log(f"bench.py: {self.label} did not exit on stdin EOF; killing it")
                self.proc.kill()
                self.proc.wait()


NGINX = "/usr/sbin/nginx"
NGINX_CONF = """\
# Written by test/bench/bench.py. Tuned as for a benchmark: no access log,
# keep-alive without a request limit.
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 8192; }}
worker_rlimit_nofile 20000;
http {{
  access_log off;
  default_type text/plain;
  keepalive_requests 100000000;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "Hello, World!"; }}
  }}
}}
"""


class Nginx:
    """nginx with its own configuration in a private prefix, in the
    foreground as our child; stopped gracefully with SIGQUIT."""

    label = "nginx"

    def __init__(self, out, workers, port, errlog, cpus=None):
        prefix = os.path.join(out, "nginx")
        for d in ("logs", "tmp"):
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
        conf = os.path.join(prefix, "nginx.conf")
        # A subclass may bring its own configuration (conf_text, conf_args)
        # and scheme (the tls section: HTTPS).
        text = getattr(self, "conf_text", NGINX_CONF)
        with open(conf, "w") as f:
            f.write(text.format(workers=workers, prefix=prefix, port=port, **getattr(self, "conf_args", {})))
        scheme = getattr(self, "scheme", "http")
        self.port = port
        self.proc = subprocess.Popen(pinned([NGINX, "-p", prefix + "/", "-c", conf, "-e",
                                             os.path.join(prefix, "logs", "error.log")], cpus),
                                     stdin=subprocess.DEVNULL, stderr=errlog)
        self.pid = self.proc.pid
        for _ in range(100):
            if subprocess.run(["curl", "-s", "-k", "-o", "/dev/null", f"{scheme}://127.0.0.1:{port}/"]).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nginx did not start on port {port} (see {errlog.name})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_ticks(pid):
    """User + system clock ticks of `pid` and its child processes (nginx's
    workers), all threads included."""
    kids = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            kids += _read(f"/proc/{pid}/task/{t}/children").split()
    except OSError:
        pass
    total = 0
    for p in [str(pid)] + kids:
        s = _read(f"/proc/{p}/stat")
        if s:
            fields = s.rsplit(") ", 1)[1].split()  # from the 3rd on; the name may hold spaces
            total += int(fields[11]) + int(fields[12])
    return total



def measure_tool(b, group, label, conns, port, pid, run, result, log_name):
    """One measured run of an outside HTTP client (run(b, conns, seconds,
    port) returns its output; result(text, cpu_s, wall_s) parses it), after
    its warm-up: the server's CPU over the run, the output appended to
    log_name in the run's folder, the row recorded."""
    if b.o.warmup > 0:
        run(b, conns, b.o.warmup, port)
    c0, t0 = cpu_ticks(pid), time.monotonic()
    text = run(b, conns, b.o.seconds, port)
    c1, t1 = cpu_ticks(pid), time.monotonic()
    with open(os.path.join(b.out, log_name), "a") as f:
        f.write(text + "\n")
    b.record(group, label, f"{conns}c", result(text, (c1 - c0) / CLK_TCK, t1 - t0))

def rss_kib(pid):
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid):
    """Direct children of `pid`, oldest first."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            s = _read(f"/proc/{p}/stat")
            if s and int(s.rsplit(") ", 1)[1].split()[1]) == pid:
                out.append(int(p))
    return sorted(out)


def wineserver_pid():
    """The wineserver of our private prefix (others may be running), or 0."""
    want = ("WINEPREFIX=" + os.environ.get("WINEPREFIX", "")).encode()
    for p in os.listdir("/proc"):
        if p.isdigit() and _read(f"/proc/{p}/comm").startswith("wineserver"):
            try:
                with open(f"/proc/{p}/environ", "rb") as f:
                    if want in f.read().split(b"\0"):
                        return int(p)
            except OSError:
                pass
    return 0


def loadavg():
    return " ".join(_read("/proc/loadavg").split()[:3])
