// Tests of the 1.1 controls through the C# wrapper (sample_clients/csharp/
// IocpSrv): context, pause/resume, drain, idle timeout, the connection cap,
// graceful stop and the errors of bad input, in both delivery modes. Runs on
// Mono against libiocpsrv.so (and on .NET against iocpsrv.dll). Exit code 0
// when every check passed.
using System;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using IocpSrv;

public static class ControlsTest
{
    private const int TimeoutMs = 60000;
    private static int passed, failed;
    // Every test runs in both delivery modes (queue, the default, first).
    private static IocpDelivery Mode = IocpDelivery.Queue;

    private static void Check(bool ok, string what)
    {
        if (ok) passed++;
        else
        {
            failed++;
            Console.WriteLine("FAIL: " + what);
        }
    }

    private static void Expect(int code, Action action, string what)
    {
        try
        {
            action();
            Check(false, what + ": no exception");
        }
        catch (IocpException e)
        {
            Check(e.Code == code, what + ": code " + e.Code + ", wanted " + code);
        }
    }

    // Waits until cond() holds; false after the time-out.
    private static bool WaitFor(Func<bool> cond)
    {
        DateTime end = DateTime.UtcNow.AddMilliseconds(TimeoutMs);
        while (!cond())
        {
            if (DateTime.UtcNow > end) return false;
            Thread.Sleep(5); // polling a condition, not synchronising on time
        }
        return true;
    }

    private static Socket Connect(ushort port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.ReceiveTimeout = TimeoutMs;
        s.SendTimeout = TimeoutMs;
        s.Connect(new IPEndPoint(IPAddress.Loopback, port));
        return s;
    }

    // True when the peer ended the connection (FIN or reset) with no bytes.
    private static bool Ended(Socket s)
    {
        try { return s.Receive(new byte[16]) == 0; }
        catch (SocketException) { return true; }
    }

    // True when a connection is ended at once with no bytes; the reset may
    // come before Connect returns.
    private static bool Refused(ushort port)
    {
        Socket s;
        try { s = Connect(port); }
        catch (SocketException) { return true; }
        using (s) return Ended(s);
    }

    // Keep-alive options reach iocp_create: out of range is refused, valid
    // ones give a working server (test_keepalive.c checks the sockets).
    private static void KeepAliveOptions()
    {
        try
        {
            using (new IocpServer(new IocpServerOptions { Mode = Mode, Port = 0, KeepAlive = true, KeepAliveIdleMs = uint.MaxValue }))
                Check(false, "keep-alive idle of years accepted");
        }
        catch (IocpException e)
        {
            Check(e.Code == IocpErrors.EInval, "keep-alive idle of years: " + e.Code);
        }
        var opts = new IocpServerOptions { Mode = Mode, Port = 0, KeepAlive = true, KeepAliveIdleMs = 2000, KeepAliveIntervalMs = 1000 };
        opts.OnData = (srv, id, data) => srv.Send(id, data);
        using (var server = new IocpServer(opts))
        using (var c = Connect(server.Port))
        {
            c.Send(new byte[] { 9 });
            var one = new byte[1];
            Check(c.Receive(one) == 1 && one[0] == 9, "keep-alive server echoes");
        }
    }

    private sealed class Obj { public ulong Id; }

    private static void ContextAndPause()
    {
        long received = 0, disconnects = 0, contextOk = 0;
        long lastId = 0;
        var opts = new IocpServerOptions { Mode = Mode, Port = 0 };
        opts.OnConnect = (srv, id, addr, port) =>
        {
            srv.SetContext(id, new Obj { Id = id });
            srv.PauseReceive(id);
            Interlocked.Exchange(ref lastId, (long)id);
            return true;
        };
        opts.OnData = (srv, id, data) =>
        {
            var o = srv.GetContext(id) as Obj;
            if (o != null && o.Id == id) Interlocked.Increment(ref contextOk);
            Interlocked.Add(ref received, data.Length);
        };
        opts.OnDisconnect = (srv, id, reason) =>
        {
            var o = srv.GetContext(id) as Obj;   // still there in the last callback
            if (o != null && o.Id == id) Interlocked.Increment(ref contextOk);
            Interlocked.Increment(ref disconnects);
        };
        using (var server = new IocpServer(opts))
        {
            var c = Connect(server.Port);
            Check(WaitFor(() => Interlocked.Read(ref lastId) != 0), "connected");
            ulong id = (ulong)Interlocked.Read(ref lastId);
            // Paused: bytes stay in the kernel, the sender stalls.
            // Paused: bytes stay in the kernel, the sender stalls. A thread
            // sends 32 MiB; it is held back when its count stops moving.
            const long total = 32L << 20;
            long sent = 0;
            var sender = new Thread(() =>
            {
                var buf = new byte[16384];
                while (Interlocked.Read(ref sent) < total)
                    Interlocked.Add(ref sent, c.Send(buf));
            });
            sender.Start();
            long held = -1;
            DateTime end = DateTime.UtcNow.AddMilliseconds(TimeoutMs);
            while (DateTime.UtcNow < end)
            {
                long before = Interlocked.Read(ref sent);
                Thread.Sleep(500); // watching for a stall
                if (Interlocked.Read(ref sent) == before) { held = before; break; }
            }
            Check(held > 0 && held < total, "paused peer held back (" + held + " bytes)");
            Check(Interlocked.Read(ref received) == 0, "nothing received while paused");
            server.ResumeReceive(id);
            sender.Join();
            Check(WaitFor(() => Interlocked.Read(ref received) == total), "all bytes after resume");
            Check(server.GetContext(id) is Obj, "context from another thread");
            c.Close();
            Check(WaitFor(() => Interlocked.Read(ref disconnects) == 1), "disconnected");
            Check(Interlocked.Read(ref contextOk) >= 2, "context in OnData and OnDisconnect");
            Expect(IocpErrors.ENotFound, () => server.GetContext(id), "context of a stale id");
            Expect(IocpErrors.ENotFound, () => server.PauseReceive(id), "pause a stale id");
            Expect(IocpErrors.ENotFound, () => server.ResumeReceive(id), "resume a stale id");
        }
    }

    private static void Drain()
    {
        const int total = 4 << 20, chunk = 64 << 10;
        long produced = 0, drains = 0, badMark = 0, stalls = 0;
        var opts = new IocpServerOptions { Mode = Mode, Port = 0, MaxSendQueue = 1 << 20, DrainMark = 128 << 10 };
        Action<IocpServer, ulong> produce = (srv, id) =>
        {
            var buf = new byte[chunk];
            while (produced < total)
            {
                for (int i = 0; i < chunk; i++) buf[i] = (byte)((produced + i) * 7);
                try { srv.Send(id, buf); }
                catch (IocpException e)
                {
                    if (e.Code == IocpErrors.EQueueFull)
                    {
                        Interlocked.Increment(ref stalls);
                        return;   // OnDrain resumes
                    }
                    throw;
                }
                produced += chunk;
            }
            srv.Shutdown(id);
        };
        opts.OnConnect = (srv, id, a, p) => { produce(srv, id); return true; };
        opts.OnDrain = (srv, id, queued) =>
        {
            Interlocked.Increment(ref drains);
            if (queued > (128 << 10)) Interlocked.Increment(ref badMark);
            if (produced < total) produce(srv, id);
        };
        opts.OnPeerClosed = (srv, id) => { };
        using (var server = new IocpServer(opts))
        {
            var c = Connect(server.Port);
            // Not reading until the queue was full once: from there on only
            // OnDrain restarts the producer (the kernel's buffers fill first).
            Check(WaitFor(() => Interlocked.Read(ref stalls) >= 1), "the send queue filled");
            var buf = new byte[65536];
            long got = 0;
            bool exact = true;
            int n;
            while ((n = c.Receive(buf)) > 0)
            {
                for (int i = 0; i < n; i++) if (buf[i] != (byte)((got + i) * 7)) exact = false;
                got += n;
            }
            Check(got == total && exact, "producer driven by OnDrain delivered " + got + " bytes exactly");
            Check(Interlocked.Read(ref drains) >= Interlocked.Read(ref stalls),
                  "OnDrain answered every full queue (" + drains + " for " + stalls + ")");
            Check(Interlocked.Read(ref badMark) == 0, "OnDrain at or below the mark");
            c.Close();
        }
    }

    private static void IdleTimeout()
    {
        long idle = 0;
        var opts = new IocpServerOptions { Mode = Mode, Port = 0, IdleTimeoutMs = 300 };
        opts.OnDisconnect = (srv, id, reason) =>
        {
            if (reason == IocpReason.IdleTimeout) Interlocked.Increment(ref idle);
        };
        opts.OnData = (srv, id, data) => srv.Send(id, data);
        using (var server = new IocpServer(opts))
        {
            var active = Connect(server.Port);
            var silent = Connect(server.Port);
            // The active peer talks every 50 ms (the traffic pattern under
            // test) on its own thread, for as long as the test runs.
            long stop = 0, pings = 0, pingFailed = 0;
            var pinger = new Thread(() =>
            {
                var one = new byte[1];
                try
                {
                    while (Interlocked.Read(ref stop) == 0)
                    {
                        active.Send(one);
                        if (active.Receive(one) != 1) { Interlocked.Increment(ref pingFailed); return; }
                        Interlocked.Increment(ref pings);
                        Thread.Sleep(50);
                    }
                }
                catch (SocketException) { Interlocked.Increment(ref pingFailed); }
            });
            pinger.Start();
            Check(WaitFor(() => Interlocked.Read(ref idle) == 1), "silent peer timed out");
            Check(Ended(silent), "silent peer dropped");
            long after = Interlocked.Read(ref pings);
            Check(WaitFor(() => Interlocked.Read(ref pings) >= after + 20), "active peer kept talking");
            Interlocked.Exchange(ref stop, 1);
            pinger.Join();
            Check(Interlocked.Read(ref idle) == 1 && Interlocked.Read(ref pingFailed) == 0,
                  "the active peer never timed out");
            Expect(IocpErrors.EInval, () => server.SetIdleTimeout(1, uint.MaxValue), "idle timeout of years");
            Expect(IocpErrors.ENotFound, () => server.SetIdleTimeout(0, 0), "idle timeout of id 0");
            silent.Close();
            active.Close();
        }
    }

    private static void Cap()
    {
        long first = 0;
        var opts = new IocpServerOptions { Mode = Mode, Port = 0, MaxConnections = 1 };
        opts.OnConnect = (srv, id, a, p) => { Interlocked.CompareExchange(ref first, (long)id, 0L); return true; };
        using (var server = new IocpServer(opts))
        {
            var b = Connect(server.Port);
            Check(WaitFor(() => server.ConnectionCount == 1 && Interlocked.Read(ref first) != 0), "first accepted");
            Check(Refused(server.Port), "second refused");
            Check(WaitFor(() => server.RefusedCount == 1), "refusal counted");
            Expect(IocpErrors.EInval, () => server.SetDrainMark((ulong)Interlocked.Read(ref first), ulong.MaxValue), "drain mark too high");
            b.Close();
            Check(WaitFor(() => server.ConnectionCount == 0), "first left");
            var d = Connect(server.Port);
            Check(WaitFor(() => server.ConnectionCount == 1), "accepted again after one left");
            d.Close();
        }
    }

    private static void Stop()
    {
        long deadline = 0, graceful = 0;
        var opts = new IocpServerOptions { Mode = Mode, Port = 0 };
        opts.OnDisconnect = (srv, id, reason) =>
        {
            if (reason == IocpReason.StopDeadline) Interlocked.Increment(ref deadline);
            if (reason == IocpReason.PeerClosed) Interlocked.Increment(ref graceful);
        };
        opts.OnConnect = (srv, id, a, p) =>
        {
            srv.Send(id, new byte[] { 42 });
            try { srv.StopGracefully(0); }
            catch (IocpException e) { if (e.Code == IocpErrors.EInCallback) srv.SetContext(id, "refused-in-callback"); }
            return true;
        };
        using (var server = new IocpServer(opts))
        {
            var polite = Connect(server.Port);
            var rude = Connect(server.Port);
            Check(WaitFor(() => server.ConnectionCount == 2), "two connected");
            var t = new Thread(() =>
            {
                var one = new byte[1];
                polite.Receive(one);
                while (polite.Receive(one) > 0) { }   // FIN after the queued byte
                polite.Close();
            });
            t.Start();
            int aborted = server.StopGracefully(1000);
            t.Join();
            Check(aborted == 1, "one connection closed at the deadline (" + aborted + ")");
            Check(Interlocked.Read(ref deadline) == 1 && Interlocked.Read(ref graceful) == 1, "reasons");
            Expect(IocpErrors.EStopped, () => server.StopGracefully(0), "second stop");
            rude.Close();
        }
    }

    // Contexts replaced from several threads while connections reset: no
    // crash (a handle freed twice), none left in the server's table once
    // every connection has ended, the last one set is the one handed back.
    private static void ContextRace()
    {
        long ended = 0;
        var live = new System.Collections.Concurrent.ConcurrentDictionary<ulong, bool>();
        var opts = new IocpServerOptions { Mode = Mode, Port = 0 };
        opts.OnConnect = (srv, id, a, p) => { live[id] = true; return true; };
        opts.OnDisconnect = (srv, id, reason) =>
        {
            bool unused;
            live.TryRemove(id, out unused);
            Check(srv.GetContext(id) == null || srv.GetContext(id) is Obj, "context in OnDisconnect");
            Interlocked.Increment(ref ended);
        };
        const int clients = 300;
        using (var server = new IocpServer(opts))
        {
            bool stop = false;
            var setters = new Thread[3];
            for (int t = 0; t < setters.Length; t++)
            {
                setters[t] = new Thread(() =>
                {
                    while (!Volatile.Read(ref stop))
                    {
                        foreach (var id in live.Keys)
                        {
                            try
                            {
                                server.SetContext(id, new Obj { Id = id });
                            }
                            catch (IocpException) { }   // ended meanwhile
                        }
                    }
                });
                setters[t].Start();
            }
            for (int i = 0; i < clients; i++)
            {
                var c = Connect(server.Port);
                if (!WaitFor(() => server.ConnectionCount > 0)) break;
                c.LingerState = new LingerOption(true, 0);   // a reset
                c.Close();
            }
            Check(WaitFor(() => Interlocked.Read(ref ended) == clients), "every reset connection ended");
            Volatile.Write(ref stop, true);
            foreach (var t in setters) t.Join();
            Check(server.ContextCount == 0, "no context left after the resets (" + server.ContextCount + ")");
        }
    }

    public static int Main()
    {
        IocpLibrary.EnsureCompatible();
        foreach (var mode in new[] { IocpDelivery.Queue, IocpDelivery.Callbacks })
        {
            Mode = mode;
            KeepAliveOptions();
            ContextAndPause();
            ContextRace();
            Drain();
            IdleTimeout();
            Cap();
            Stop();
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }
}
