// The per-connection controls of the event-style API in both delivery
// modes (moved from the Mono suite): keep-alive options, context and
// pause/resume, drain, idle timeout, the connection cap, graceful stop and
// the errors of bad input.
using System.Net.Sockets;
using Xunit;
using static IocpSrv.Tests.Blocking;

namespace IocpSrv.Tests;

public class ControlsTests
{
    private sealed class Obj { public ulong Id; }

    // Out of range is refused; valid ones give a working server
    // (test_keepalive.c checks the sockets).
    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void KeepAliveOptions(IocpDelivery mode)
    {
        Expect(IocpErrors.EInval, () => new IocpServer(new IocpServerOptions
            { Mode = mode, Port = 0, KeepAlive = true, KeepAliveIdleMs = uint.MaxValue }).Dispose());
        var opts = new IocpServerOptions { Mode = mode, Port = 0, KeepAlive = true, KeepAliveIdleMs = 2000, KeepAliveIntervalMs = 1000 };
        opts.OnData = (srv, id, data) => srv.Send(id, data);
        using var server = new IocpServer(opts);
        using Socket c = Connect(server.Port);
        Assert.True(Echo(c, new byte[] { 9 }));
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void ContextAndPause(IocpDelivery mode)
    {
        long received = 0, disconnects = 0, contextOk = 0, lastId = 0;
        var opts = new IocpServerOptions { Mode = mode, Port = 0 };
        opts.OnConnect = (srv, id, addr, port) =>
        {
            srv.SetContext(id, new Obj { Id = id });
            srv.PauseReceive(id);
            Interlocked.Exchange(ref lastId, (long)id);
            return true;
        };
        opts.OnData = (srv, id, data) =>
        {
            if (srv.GetContext(id) is Obj o && o.Id == id) Interlocked.Increment(ref contextOk);
            Interlocked.Add(ref received, data.Length);
        };
        opts.OnDisconnect = (srv, id, reason) =>
        {
            if (srv.GetContext(id) is Obj o && o.Id == id) Interlocked.Increment(ref contextOk);   // still there
            Interlocked.Increment(ref disconnects);
        };
        using var server = new IocpServer(opts);
        Socket c = Connect(server.Port);
        Assert.True(WaitFor(() => Interlocked.Read(ref lastId) != 0), "connected");
        ulong id = (ulong)Interlocked.Read(ref lastId);
        // Paused: bytes stay in the kernel, the sender stalls. A thread sends
        // 32 MiB; it is held back when its count stops moving.
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
            Thread.Sleep(500);   // watching for a stall
            if (Interlocked.Read(ref sent) == before) { held = before; break; }
        }
        Assert.InRange(held, 1, total - 1);
        Assert.Equal(0, Interlocked.Read(ref received));
        server.ResumeReceive(id);
        sender.Join();
        Assert.True(WaitFor(() => Interlocked.Read(ref received) == total), "all bytes after resume");
        Assert.IsType<Obj>(server.GetContext(id));   // from another thread
        c.Close();
        Assert.True(WaitFor(() => Interlocked.Read(ref disconnects) == 1), "disconnected");
        Assert.True(Interlocked.Read(ref contextOk) >= 2, "context in OnData and OnDisconnect");
        Expect(IocpErrors.ENotFound, () => server.GetContext(id));
        Expect(IocpErrors.ENotFound, () => server.PauseReceive(id));
        Expect(IocpErrors.ENotFound, () => server.ResumeReceive(id));
    }

    // A producer driven by OnDrain: it sends until the queue is full, and
    // OnDrain (at or below the mark) restarts it.
    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void Drain(IocpDelivery mode)
    {
        const int total = 4 << 20, chunk = 64 << 10;
        long produced = 0, drains = 0, badMark = 0, stalls = 0;
        var opts = new IocpServerOptions { Mode = mode, Port = 0, MaxSendQueue = 1 << 20, DrainMark = 128 << 10 };
        void Produce(IocpServer srv, ulong id)
        {
            var buf = new byte[chunk];
            while (produced < total)
            {
                for (int i = 0; i < chunk; i++) buf[i] = (byte)((produced + i) * 7);
                try { srv.Send(id, buf); }
                catch (IocpException e) when (e.Code == IocpErrors.EQueueFull)
                {
                    Interlocked.Increment(ref stalls);
                    return;   // OnDrain resumes
                }
                produced += chunk;
            }
            srv.Shutdown(id);
        }
        opts.OnConnect = (srv, id, a, p) => { Produce(srv, id); return true; };
        opts.OnDrain = (srv, id, queued) =>
        {
            Interlocked.Increment(ref drains);
            if (queued > (128 << 10)) Interlocked.Increment(ref badMark);
            if (produced < total) Produce(srv, id);
        };
        opts.OnPeerClosed = (srv, id) => { };
        using var server = new IocpServer(opts);
        using Socket c = Connect(server.Port);
        // Not reading until the queue was full once: from there on only
        // OnDrain restarts the producer (the kernel's buffers fill first).
        Assert.True(WaitFor(() => Interlocked.Read(ref stalls) >= 1), "the send queue filled");
        var buf = new byte[65536];
        long got = 0;
        bool exact = true;
        int n;
        while ((n = c.Receive(buf)) > 0)
        {
            for (int i = 0; i < n; i++) if (buf[i] != (byte)((got + i) * 7)) exact = false;
            got += n;
        }
        Assert.Equal(total, got);
        Assert.True(exact, "byte-exact");
        Assert.True(Interlocked.Read(ref drains) >= Interlocked.Read(ref stalls), "OnDrain answered every full queue");
        Assert.Equal(0, Interlocked.Read(ref badMark));
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void IdleTimeout(IocpDelivery mode)
    {
        long idle = 0;
        // 2 s: the active peer's pings, 50 ms apart, stay far inside it even
        // when a busy machine delays its thread (300 ms was not, at load 24).
        var opts = new IocpServerOptions { Mode = mode, Port = 0, IdleTimeoutMs = 2000 };
        opts.OnDisconnect = (srv, id, reason) =>
        {
            if (reason == IocpReason.IdleTimeout) Interlocked.Increment(ref idle);
        };
        opts.OnData = (srv, id, data) => srv.Send(id, data);
        using var server = new IocpServer(opts);
        using Socket active = Connect(server.Port);
        using Socket silent = Connect(server.Port);
        // The active peer talks every 50 ms (the traffic pattern under test)
        // on its own thread, for as long as the test runs.
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
        Assert.True(WaitFor(() => Interlocked.Read(ref idle) >= 1), "silent peer timed out");
        Assert.True(Ended(silent), "silent peer dropped");
        long after = Interlocked.Read(ref pings);
        Assert.True(WaitFor(() => Interlocked.Read(ref pings) >= after + 20), "active peer kept talking");
        Interlocked.Exchange(ref stop, 1);
        pinger.Join();
        Assert.Equal(1, Interlocked.Read(ref idle));
        Assert.Equal(0, Interlocked.Read(ref pingFailed));
        Expect(IocpErrors.EInval, () => server.SetIdleTimeout(1, uint.MaxValue));
        Expect(IocpErrors.ENotFound, () => server.SetIdleTimeout(0, 0));
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void Cap(IocpDelivery mode)
    {
        long first = 0;
        var opts = new IocpServerOptions { Mode = mode, Port = 0, MaxConnections = 1 };
        opts.OnConnect = (srv, id, a, p) => { Interlocked.CompareExchange(ref first, (long)id, 0L); return true; };
        using var server = new IocpServer(opts);
        Socket b = Connect(server.Port);
        Assert.True(WaitFor(() => server.ConnectionCount == 1 && Interlocked.Read(ref first) != 0), "first accepted");
        Assert.True(Refused(server.Port), "second refused");
        Assert.True(WaitFor(() => server.RefusedCount == 1), "refusal counted");
        Expect(IocpErrors.EInval, () => server.SetDrainMark((ulong)Interlocked.Read(ref first), ulong.MaxValue));
        b.Close();
        Assert.True(WaitFor(() => server.ConnectionCount == 0), "first left");
        using Socket d = Connect(server.Port);
        Assert.True(WaitFor(() => server.ConnectionCount == 1), "accepted again after one left");
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void StopGracefullyWithADeadline(IocpDelivery mode)
    {
        long deadline = 0, graceful = 0, refusedInside = 0;
        var opts = new IocpServerOptions { Mode = mode, Port = 0 };
        opts.OnDisconnect = (srv, id, reason) =>
        {
            if (reason == IocpReason.StopDeadline) Interlocked.Increment(ref deadline);
            if (reason == IocpReason.PeerClosed) Interlocked.Increment(ref graceful);
        };
        opts.OnConnect = (srv, id, a, p) =>
        {
            srv.Send(id, new byte[] { 42 });
            try { srv.StopGracefully(0); }
            catch (IocpException e) when (e.Code == IocpErrors.EInCallback) { Interlocked.Increment(ref refusedInside); }
            return true;
        };
        using var server = new IocpServer(opts);
        using Socket polite = Connect(server.Port);
        using Socket rude = Connect(server.Port);
        Assert.True(WaitFor(() => server.ConnectionCount == 2), "two connected");
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
        Assert.Equal(1, aborted);
        Assert.Equal(1, Interlocked.Read(ref deadline));
        Assert.Equal(1, Interlocked.Read(ref graceful));
        Assert.Equal(2, Interlocked.Read(ref refusedInside));
        Expect(IocpErrors.EStopped, () => server.StopGracefully(0));
    }
}
