"""The Markdown report: medians over rounds, ratios to the baseline (the
first label of each group and configuration) measured in the same run."""

import statistics

NAN = float("nan")


def med(xs):
    return statistics.median(xs) if xs else NAN


def ok(r):
    return r.get("errors") == "0" and "echoes_per_s" in r


def vals(rs, key, scale=1.0):
    return [float(r[key]) * scale for r in rs if ok(r) and key in r]


def rows(runs, groups):
    """(cfg, baseline label, its runs, label, its runs) for each non-baseline label."""
    seen = []
    for r in runs:
        key = (r["cfg"], r["group"])
        if r["group"] in groups and key not in seen:
            seen.append(key)
    for cfg, group in seen:
        rs = [r for r in runs if r["cfg"] == cfg and r["group"] == group]
        labels = list(dict.fromkeys(r["label"] for r in rs))
        b = [r for r in rs if r["label"] == labels[0]]
        for lab in labels[1:]:
            yield cfg, labels[0], b, lab, [r for r in rs if r["label"] == lab]


def compare(b, s):
    """Median rates, the server's range, the ratio, and the paired ratios'
    range (the i-th run of each ran next to each other)."""
    b_eps, s_eps = vals(b, "echoes_per_s"), vals(s, "echoes_per_s")
    pairs = [float(y["echoes_per_s"]) / float(x["echoes_per_s"])
             for x, y in zip(b, s) if ok(x) and ok(y) and float(x["echoes_per_s"]) > 0]
    rng = f"{min(s_eps):,.0f}-{max(s_eps):,.0f}" if s_eps else "-"
    prng = f"{min(pairs):.2f}-{max(pairs):.2f}" if pairs else "-"
    ratio = med(s_eps) / med(b_eps) if b_eps and s_eps and med(b_eps) > 0 else NAN
    return f"{med(b_eps):,.0f} | {med(s_eps):,.0f} ({rng}) | {ratio:.2f} | {prng}"


def p99s(b, s):
    return f"{med(vals(b, 'p99_us', 1e-3)):.2f} | {med(vals(s, 'p99_us', 1e-3)):.2f}"


def conf(cfg):
    if cfg.endswith("c"):
        return f"{cfg[:-1]} conns"
    c, m, *k = cfg.split("x")
    return f"{c} conns x {m} B" + (f", {k[0]} in flight" if k else "")


def quart(xs):
    xs = sorted(xs)
    if not xs:
        return "-"
    q = lambda f: xs[round(f * (len(xs) - 1))]
    return f"{med(xs):.3f} ({q(0.25):.3f}-{q(0.75):.3f})"


def fresh_tables(runs, o, winever):
    if any(r["group"] in ("wine", "native") for r in runs):
        print()
        print(f"Echo ({winever}; natively: the Linux build):")
        print()
        print("| configuration | server | baseline echoes/s | server echoes/s (min-max) | ratio server/baseline | "
              "paired ratios (min-max) | baseline p99 ms | server p99 ms | failed runs |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for cfg, base, b, lab, s in rows(runs, ("wine", "native")):
            failed = sum(not ok(r) for r in b + s)
            print(f"| {conf(cfg)} | {lab} vs {base} | {compare(b, s)} | {p99s(b, s)} | {failed} |")
    for group, title, unit, one in (
            ("uv", "Echo against libuv, natively", "echoes", "echo"),
            ("py", "Python echo servers, natively (Debian's python3)", "echoes", "echo"),
            ("cs", "The C# sample on Mono against the C sample, natively", "echoes", "echo"),
            ("http", f"HTTP against nginx, natively (wrk -t {o.wrk_threads}; {o.http_threads} workers each)",
             "requests", "request")):
        if not any(r["group"] == group for r in runs):
            continue
        print()
        print(f"{title}; CPU is the server's user + system time per {one}:")
        print()
        print(f"| configuration | server | baseline {unit}/s | server {unit}/s (min-max) | ratio server/baseline | "
              f"paired ratios (min-max) | baseline CPU us/{one} | server CPU us/{one} | "
              "CPU ratio server/baseline | baseline p99 ms | server p99 ms | failed runs |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for cfg, base, b, lab, s in rows(runs, (group,)):
            b_cpu, s_cpu = med(vals(b, "server_cpu_us_per_echo")), med(vals(s, "server_cpu_us_per_echo"))
            failed = sum(not ok(r) for r in b + s)
            print(f"| {conf(cfg)} | {lab} vs {base} | {compare(b, s)} | {b_cpu:.2f} | {s_cpu:.2f} | "
                  f"{s_cpu / b_cpu if b_cpu > 0 else NAN:.2f} | {p99s(b, s)} | {failed} |")


def live_tables(runs, o, winever):
    for group, title, unit, one in (
            ("live", "Echo against libuv, natively", "echoes", "echo"),
            ("live-epoll", "Echo against the one-thread epoll echo, natively", "echoes", "echo"),
            ("park", "The echo sample natively, parking on (the default) against parking off, "
                     "idle parking only, and one worker", "echoes", "echo"),
            ("live-wine", f"Echo against the minimal IOCP echo ({winever})", "echoes", "echo"),
            ("py-proto", f"asyncio Protocol echoes against uvloop's (loadgen --io {o.client})", "echoes", "echo"),
            ("py-streams", f"asyncio streams echoes against uvloop's (loadgen --io {o.client})", "echoes", "echo"),
            ("aiohttp-wrk", f"aiohttp hello-world against uvloop's (wrk -t {o.wrk_threads})", "requests", "request"),
            ("aiohttp-ab", "aiohttp hello-world against uvloop's (ab -k)", "requests", "request"),
            ("dn-echo", f".NET echoes against a System.Net.Sockets echo (loadgen --io {o.client})", "echoes", "echo"),
            ("dn-queue", f"The C# sample on .NET against the C sample (loadgen --io {o.client})", "echoes", "echo"),
            ("kestrel-wrk", f"Kestrel hello-world against its sockets transport (wrk -t {o.wrk_threads})",
             "requests", "request"),
            ("kestrel-h2load", "Kestrel hello-world against its sockets transport (h2load --h1 -t 1)",
             "requests", "request"),
            ("live-http", f"HTTP against nginx, natively (wrk -t {o.wrk_threads}; {o.http_threads} workers each)",
             "requests", "request")):
        if not any(r["group"] == group for r in runs):
            continue
        print()
        # Where the rate is set: a client (or, under Wine, a wineserver) that
        # runs all the time is the bottleneck (test/bench/README.md).
        shares = [("client_cpu_pct", "client")] if unit == "echoes" else []
        if group == "live-wine":
            shares.append(("watched_cpu_pct", "wineserver"))
        print(f"{title}, servers kept running and driven in turn "
              "(paired ratios: the same round's runs; median, and quartiles in brackets"
              + ("; CPU %: median share of one processor, baseline / server" if shares else "") + "):")
        print()
        print(f"| configuration | server | baseline {unit}/s | server {unit}/s | paired ratio of {unit}/s | "
              f"baseline CPU us/{one} | server CPU us/{one} | paired ratio of CPU per {one} | "
              + "".join(f"{who} CPU % | " for _, who in shares) + "rounds | failed runs |")
        print("|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(shares) + "---:|---:|")
        for cfg, base, b, lab, s in rows(runs, (group,)):
            both = [(x, y) for x, y in zip(b, s) if ok(x) and ok(y)]
            rate = [float(y["echoes_per_s"]) / float(x["echoes_per_s"]) for x, y in both
                    if float(x["echoes_per_s"]) > 0]
            cpu = [float(y["server_cpu_us_per_echo"]) / float(x["server_cpu_us_per_echo"]) for x, y in both
                   if float(x.get("server_cpu_us_per_echo", 0)) > 0 and "server_cpu_us_per_echo" in y]
            failed = sum(not ok(r) for r in b + s)
            print(f"| {conf(cfg)} | {lab} vs {base} | {med(vals(b, 'echoes_per_s')):,.0f} | "
                  f"{med(vals(s, 'echoes_per_s')):,.0f} | {quart(rate)} | "
                  f"{med(vals(b, 'server_cpu_us_per_echo')):.2f} | {med(vals(s, 'server_cpu_us_per_echo')):.2f} | "
                  f"{quart(cpu)} | "
                  + "".join(f"{med(vals(b, k)):.0f} / {med(vals(s, k)):.0f} | " for k, _ in shares)
                  + f"{len(both)} | {failed} |")


def report(runs, o, cmdline, started, winever, load_start, load_end, raw):
    print(f"Benchmarks, {started}; {o.seconds:g} s measured after {o.warmup:g} s warm-up; "
          f"median of {o.rounds} rounds, servers alternated; load average {load_start} at the "
          f"start, {load_end} at the end.")
    print()
    print(f"    {cmdline}")
    fresh_tables(runs, o, winever)
    live_tables(runs, o, winever)
    print()
    print(f"Raw results: {raw}")
