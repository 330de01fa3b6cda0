// IocpServer, the event-style API, on .NET in both delivery modes: echo
// (callbacks through UnmanagedCallersOnly function pointers), contexts set
// from several threads while connections reset, handler exceptions, options
// read once.
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using Xunit;

namespace IocpSrv.Tests;

public class EventStyleTests
{
    public static readonly TheoryData<IocpDelivery> Modes = new() { IocpDelivery.Queue, IocpDelivery.Callbacks };

    [Theory, MemberData(nameof(Modes))]
    public async Task Echoes(IocpDelivery mode)
    {
        var options = new IocpServerOptions { Port = 0, Mode = mode };
        options.OnData = (s, id, data) => s.Send(id, data);
        using var server = new IocpServer(options);
        using Socket c = await Net.ConnectAsync(server.Port);
        await c.SendAsync(Encoding.ASCII.GetBytes("echo"));
        Assert.Equal("echo", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(c, 4)));
    }

    [Theory, MemberData(nameof(Modes))]
    public async Task ContextsSetFromThreadsWhileConnectionsResetNeitherCrashNorLeak(IocpDelivery mode)
    {
        var live = new ConcurrentDictionary<ulong, bool>();
        long ended = 0;
        var options = new IocpServerOptions { Port = 0, Mode = mode };
        options.OnConnect = (s, id, a, p) => { live[id] = true; return true; };
        options.OnDisconnect = (s, id, r) => { live.TryRemove(id, out _); Interlocked.Increment(ref ended); };
        using var server = new IocpServer(options);
        using var stop = new CancellationTokenSource();
        Task[] setters = Enumerable.Range(0, 3).Select(_ => Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
                foreach (ulong id in live.Keys)
                {
                    try { server.SetContext(id, new object()); }
                    catch (IocpException e) when (e.Error == IocpError.ENotFound) { }
                }
        })).ToArray();
        const int clients = 300;
        for (int i = 0; i < clients; i++)
        {
            Socket s = await Net.ConnectAsync(server.Port);
            await Net.WaitForAsync(() => server.ConnectionCount > 0 || Interlocked.Read(ref ended) > i, "connected");
            Net.Reset(s);
        }
        await Net.WaitForAsync(() => Interlocked.Read(ref ended) == clients, "every connection ended");
        stop.Cancel();
        await Task.WhenAll(setters);
        Assert.Equal(0, server.ContextCount);
    }

    [Theory, MemberData(nameof(Modes))]
    public async Task AThrowingHandlerIsReportedAndTheServerGoesOn(IocpDelivery mode)
    {
        var errors = new ConcurrentQueue<Exception>();
        var options = new IocpServerOptions { Port = 0, Mode = mode };
        options.OnData = (s, id, data) =>
        {
            if (data[0] == (byte)'!') throw new InvalidOperationException("boom");
            s.Send(id, data);
        };
        options.OnError = (s, where, e) => errors.Enqueue(e);
        using var server = new IocpServer(options);
        using Socket c = await Net.ConnectAsync(server.Port);
        await c.SendAsync(Encoding.ASCII.GetBytes("!"));
        await Net.WaitForAsync(() => !errors.IsEmpty, "OnError");
        Assert.IsType<InvalidOperationException>(errors.Single());
        await c.SendAsync(Encoding.ASCII.GetBytes("x"));
        Assert.Equal("x", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(c, 1)));
    }

    [Fact]
    public async Task OptionsAreReadOnce()
    {
        var options = new IocpServerOptions { Port = 0 };
        options.OnData = (s, id, data) => s.Send(id, data);
        options.OnSent = (s, id, n) => { };
        using var server = new IocpServer(options);
        options.OnSent = null;   // changes nothing in the running server
        options.OnData = null;
        using Socket c = await Net.ConnectAsync(server.Port);
        await c.SendAsync(Encoding.ASCII.GetBytes("y"));
        Assert.Equal("y", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(c, 1)));
    }

    [Fact]
    public void PortInUseKeepsItsCode()
    {
        using var first = new IocpServer(new IocpServerOptions { Port = 0 });
        var e = Assert.Throws<IocpException>(() => new IocpServer(new IocpServerOptions { Port = first.Port }));
        Assert.Equal(IocpError.EAddrInUse, e.Error);
    }
}

public class EventStyleStopTests
{
    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public async Task StopAsyncIsGracefulUntilItsTokenFiresAndIdempotent(IocpDelivery mode)
    {
        var reasons = new System.Collections.Concurrent.ConcurrentQueue<IocpReason>();
        var options = new IocpServerOptions { Port = 0, Mode = mode };
        options.OnDisconnect = (s, id, r) => reasons.Enqueue(r);
        using var server = new IocpServer(options);
        using Socket polite = await Net.ConnectAsync(server.Port);
        using Socket rude = await Net.ConnectAsync(server.Port);
        await Net.WaitForAsync(() => server.ConnectionCount == 2, "both connected");
        using var cts = new CancellationTokenSource();
        Task stop = server.StopAsync(cts.Token);
        Assert.Equal(0, await Net.DrainToEndAsync(polite));   // FIN: graceful
        polite.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Net.DrainToEndAsync(rude));
        await Net.WaitForAsync(() => reasons.Count == 1, "the polite one ended");
        Assert.False(stop.IsCompleted);
        cts.Cancel();                                          // now abortive
        await stop.WaitAsync(Net.Token());
        await Net.WaitForAsync(() => reasons.Count == 2, "the rude one ended");
        Assert.Equal(new[] { IocpReason.PeerClosed, IocpReason.Destroy }, reasons.ToArray());
        await server.StopAsync().WaitAsync(Net.Token());       // again: no error
    }
}
