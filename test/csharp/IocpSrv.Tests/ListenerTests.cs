// IocpListener and IocpConnection: accept, cancel, echo over the pipes,
// backpressure both ways, half-close both ways, abort, outbound connects,
// errors as SocketException, StopAsync and disposal.
using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Xunit;

namespace IocpSrv.Tests;

public class ListenerTests
{
    private static async Task EchoAsync(IocpConnection c)
    {
        await using (c)
        {
            await c.Input.CopyToAsync(c.Output, Net.Token());
            await c.Output.CompleteAsync();
            await c.Ended.WaitAsync(Net.Token());
        }
    }

    // Also with the reader's code inline on the drain thread, and with
    // flushes coalesced.
    [Theory, InlineData(false, false), InlineData(true, false), InlineData(false, true)]
    public async Task AcceptsAndEchoesThroughThePipes(bool inline, bool coalesce)
    {
        await using var listener = IocpListener.Listen(Net.Loopback0,
            new IocpListenerOptions { UnsafePreferInlineScheduling = inline, CoalesceFlushes = coalesce });
        Assert.NotEqual(0, listener.LocalEndPoint.Port);
        using var client = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        IocpConnection? c = await listener.AcceptAsync(Net.Token());
        Assert.NotNull(c);
        Assert.Equal(IPAddress.Loopback, c!.RemoteEndPoint.Address);
        Assert.Equal(((IPEndPoint)client.LocalEndPoint!).Port, c.RemoteEndPoint.Port);
        Assert.Equal(listener.LocalEndPoint, c.LocalEndPoint);
        Task echo = EchoAsync(c);
        await client.SendAsync(Encoding.ASCII.GetBytes("hello pipes"));
        Assert.Equal("hello pipes", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(client, 11)));
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Net.DrainToEndAsync(client));   // FIN after the echo
        await echo;
        Assert.Equal(IocpReason.PeerClosed, c.Reason);
    }

    [Fact]
    public async Task AcceptAsyncHonoursItsTokenAndEndsWithNullWhenStopped()
    {
        await using var listener = IocpListener.Listen(Net.Loopback0);
        using var cts = new CancellationTokenSource();
        ValueTask<IocpConnection?> pending = listener.AcceptAsync(cts.Token);
        Assert.False(pending.IsCompleted);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await pending);
        listener.StopAccepting();
        Assert.Null(await listener.AcceptAsync(Net.Token()));
    }

    [Fact]
    public async Task AcceptAllAsyncEnumeratesEveryConnection()
    {
        await using var listener = IocpListener.Listen(Net.Loopback0);
        var clients = new List<Socket>();
        for (int i = 0; i < 3; i++) clients.Add(await Net.ConnectAsync(listener.LocalEndPoint.Port));
        var got = new List<IocpConnection>();
        await foreach (IocpConnection c in listener.AcceptAllAsync(Net.Token()))
        {
            got.Add(c);
            if (got.Count == 3) break;
        }
        Assert.Equal(clients.Select(s => ((IPEndPoint)s.LocalEndPoint!).Port).OrderBy(p => p),
                     got.Select(c => c.RemoteEndPoint.Port).OrderBy(p => p));
        foreach (Socket s in clients) s.Dispose();
    }

    [Fact]
    public async Task PortInUseIsASocketExceptionAddressAlreadyInUse()
    {
        await using var first = IocpListener.Listen(Net.Loopback0);
        var e = Assert.Throws<SocketException>(() => IocpListener.Listen(first.LocalEndPoint));
        Assert.Equal(SocketError.AddressAlreadyInUse, e.SocketErrorCode);
    }

    [Fact]
    public async Task AReaderThatStopsReadingPausesThePeerWithMemoryBounded()
    {
        var options = new IocpListenerOptions { InputPauseThreshold = 256 << 10, InputResumeThreshold = 128 << 10 };
        await using var listener = IocpListener.Listen(Net.Loopback0, options);
        using var client = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        IocpConnection c = (await listener.AcceptAsync(Net.Token()))!;
        const int total = 32 << 20;
        // The client sends without blocking until the kernel takes no more
        // for a while: the server stopped receiving.
        client.Blocking = false;
        var chunk = new byte[64 << 10];
        int sent = 0;
        DateTime lastProgress = DateTime.UtcNow;
        while (sent < total && DateTime.UtcNow - lastProgress < TimeSpan.FromMilliseconds(500))
        {
            try
            {
                sent += client.Send(chunk, 0, Math.Min(chunk.Length, total - sent), SocketFlags.None);
                lastProgress = DateTime.UtcNow;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.WouldBlock)
            {
                await Task.Delay(1);
            }
        }
        Assert.True(sent < total, "the peer was never slowed down");
        ulong received = listener.Server.Statistics.BytesReceived;
        Assert.True(received < 4u << 20, $"{received} bytes taken from a peer nobody reads");
        // Reading again resumes the peer: every byte arrives.
        client.Blocking = true;
        Task sender = Task.Run(() =>
        {
            while (sent < total) sent += client.Send(chunk, 0, Math.Min(chunk.Length, total - sent), SocketFlags.None);
            client.Shutdown(SocketShutdown.Send);
        });
        long read = 0;
        for (;;)
        {
            ReadResult r = await c.Input.ReadAsync(Net.Token());
            read += r.Buffer.Length;
            c.Input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        await sender;
        Assert.Equal(total, read);
    }

    // Also with flushes coalesced (staged bytes past the limit go at once).
    [Theory, InlineData(false), InlineData(true)]
    public async Task FlushAsyncWaitsWhileThePeerDoesNotRead(bool coalesce)
    {
        var options = new IocpListenerOptions { OutputQueueLimit = 256 << 10, OutputDrainMark = 64 << 10,
                                                CoalesceFlushes = coalesce };
        await using var listener = IocpListener.Listen(Net.Loopback0, options);
        using var client = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        client.ReceiveBufferSize = 64 << 10;
        IocpConnection c = (await listener.AcceptAsync(Net.Token()))!;
        const int total = 32 << 20;
        long written = 0;
        Task writer = Task.Run(async () =>
        {
            var chunk = new byte[16 << 10];
            while (written < total)
            {
                await c.Output.WriteAsync(chunk, Net.Token());
                Interlocked.Add(ref written, chunk.Length);
            }
            await c.Output.CompleteAsync();
        });
        // The writer stalls: no progress for half a second, far from the end.
        long seen = -1;
        DateTime since = DateTime.UtcNow;
        await Net.WaitForAsync(() =>
        {
            long w = Interlocked.Read(ref written);
            if (w != seen) { seen = w; since = DateTime.UtcNow; }
            return DateTime.UtcNow - since > TimeSpan.FromMilliseconds(500);
        }, "the writer never stalled");
        Assert.False(writer.IsCompleted);
        Assert.True(Interlocked.Read(ref written) < 8 << 20, $"{written} bytes written to a peer that does not read");
        ulong queued = listener.Server.Queued(c.Id);
        Assert.True(queued <= (256 << 10) + (64 << 10), $"{queued} bytes queued in the library");
        // The peer reads: everything arrives, then the FIN.
        Assert.Equal(total, await Net.DrainToEndAsync(client));
        await writer;
    }

    [Fact]
    public async Task HalfClosesBothWays()
    {
        await using var listener = IocpListener.Listen(Net.Loopback0);
        using var client = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        IocpConnection c = (await listener.AcceptAsync(Net.Token()))!;
        // The peer's FIN completes Input; the connection can still write.
        await client.SendAsync(Encoding.ASCII.GetBytes("question"));
        client.Shutdown(SocketShutdown.Send);
        var got = new MemoryStream();
        for (;;)
        {
            ReadResult r = await c.Input.ReadAsync(Net.Token());
            foreach (var m in r.Buffer) got.Write(m.Span);
            c.Input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        Assert.Equal("question", Encoding.ASCII.GetString(got.ToArray()));
        await c.Output.WriteAsync(Encoding.ASCII.GetBytes("answer"), Net.Token());
        // Output.Complete(): the bytes, then FIN.
        await c.Output.CompleteAsync();
        Assert.Equal("answer", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(client, 6)));
        Assert.Equal(0, await Net.DrainToEndAsync(client));
        await c.Ended.WaitAsync(Net.Token());
        Assert.Equal(IocpReason.PeerClosed, c.Reason);
    }

    [Fact]
    public async Task ServerHalfCloseFirstThenThePeerStillSends()
    {
        await using var listener = IocpListener.Listen(Net.Loopback0);
        using var client = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        IocpConnection c = (await listener.AcceptAsync(Net.Token()))!;
        await c.Output.CompleteAsync();
        Assert.Equal(0, await Net.DrainToEndAsync(client));   // FIN first
        await client.SendAsync(Encoding.ASCII.GetBytes("late"));
        ReadResult r = await c.Input.ReadAtLeastAsync(4, Net.Token());
        Assert.Equal("late", Encoding.ASCII.GetString(r.Buffer.ToArray()));
        c.Input.AdvanceTo(r.Buffer.End);
        client.Shutdown(SocketShutdown.Send);
        await c.Ended.WaitAsync(Net.Token());
    }

    [Fact]
    public async Task AbortResetsThePeer()
    {
        await using var listener = IocpListener.Listen(Net.Loopback0);
        using var client = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        IocpConnection c = (await listener.AcceptAsync(Net.Token()))!;
        c.Abort();
        var e = await Assert.ThrowsAsync<SocketException>(() => Net.DrainToEndAsync(client));
        Assert.Equal(SocketError.ConnectionReset, e.SocketErrorCode);
        await c.Ended.WaitAsync(Net.Token());
        Assert.True(c.ConnectionClosed.IsCancellationRequested);
        // A reset peer: Input ends with an error.
        using var client2 = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        IocpConnection c2 = (await listener.AcceptAsync(Net.Token()))!;
        Net.Reset(client2);
        await Assert.ThrowsAsync<IOException>(async () =>
        {
            for (;;)
            {
                ReadResult r = await c2.Input.ReadAsync(Net.Token());
                c2.Input.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted) return;
            }
        });
    }

    [Fact]
    public async Task ConnectAsyncOpensOutboundConnectionsAndReportsRefusal()
    {
        await using var server = IocpListener.Listen(Net.Loopback0);
        await using var client = IocpListener.Listen(Net.Loopback0);
        IocpConnection outbound = await client.ConnectAsync(server.LocalEndPoint, Net.Token());
        IocpConnection inbound = (await server.AcceptAsync(Net.Token()))!;
        await outbound.Output.WriteAsync(Encoding.ASCII.GetBytes("ping"), Net.Token());
        ReadResult r = await inbound.Input.ReadAtLeastAsync(4, Net.Token());
        Assert.Equal("ping", Encoding.ASCII.GetString(r.Buffer.ToArray()));
        inbound.Input.AdvanceTo(r.Buffer.End);
        Assert.Equal(server.LocalEndPoint, outbound.RemoteEndPoint);
        // Both ends' local addresses: the outbound one's port is the one the
        // accepting side sees as its peer's.
        Assert.NotNull(outbound.LocalEndPoint);
        Assert.Equal(IPAddress.Loopback, outbound.LocalEndPoint!.Address);
        Assert.Equal(inbound.RemoteEndPoint, outbound.LocalEndPoint);
        Assert.Equal(server.LocalEndPoint, inbound.LocalEndPoint);

        // A port nobody listens on: ConnectionRefused.
        var probe = IocpListener.Listen(Net.Loopback0);
        IPEndPoint closed = probe.LocalEndPoint;
        await probe.DisposeAsync();
        var e = await Assert.ThrowsAsync<SocketException>(async () => await client.ConnectAsync(closed, Net.Token()));
        Assert.Equal(SocketError.ConnectionRefused, e.SocketErrorCode);
    }

    [Fact]
    public async Task StopAsyncIsGracefulUntilItsTokenFiresAndIdempotent()
    {
        var listener = IocpListener.Listen(Net.Loopback0);
        using var polite = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        using var rude = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        IocpConnection a = (await listener.AcceptAsync(Net.Token()))!;
        IocpConnection b = (await listener.AcceptAsync(Net.Token()))!;
        using var cts = new CancellationTokenSource();
        Task stop = listener.StopAsync(cts.Token);
        // Graceful: both peers get a FIN; the polite one closes in turn.
        Assert.Equal(0, await Net.DrainToEndAsync(polite));
        polite.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Net.DrainToEndAsync(rude));
        // The polite one ends by the peer's FIN before the token fires.
        await Task.WhenAny(a.Ended, b.Ended).WaitAsync(Net.Token());
        Assert.False(stop.IsCompleted);   // the rude one stays open
        cts.Cancel();                      // now abortive
        await stop.WaitAsync(Net.Token());
        await Task.WhenAll(a.Ended, b.Ended).WaitAsync(Net.Token());
        Assert.Contains(IocpReason.PeerClosed, new[] { a.Reason, b.Reason });
        // Again: at once, no error; and then disposal.
        await listener.StopAsync().WaitAsync(Net.Token());
        Assert.Null(await listener.AcceptAsync(Net.Token()));
        await listener.DisposeAsync();
        await listener.DisposeAsync();
    }

    [Fact]
    public async Task DisposalUnderLoadEndsEveryConnection()
    {
        var listener = IocpListener.Listen(Net.Loopback0);
        var echoes = new List<Task>();
        Task acceptor = Task.Run(async () =>
        {
            await foreach (IocpConnection c in listener.AcceptAllAsync())
                lock (echoes) echoes.Add(EchoAsync(c));
        });
        var clients = new List<Task>();
        using var stopClients = new CancellationTokenSource();
        for (int i = 0; i < 40; i++)
        {
            clients.Add(Task.Run(async () =>
            {
                using Socket s = await Net.ConnectAsync(listener.LocalEndPoint.Port);
                var buf = new byte[4096];
                try
                {
                    while (!stopClients.IsCancellationRequested)
                    {
                        await s.SendAsync(buf);
                        await Net.ReceiveExactlyAsync(s, buf.Length);
                    }
                }
                catch (Exception e) when (e is SocketException or EndOfStreamException or OperationCanceledException) { }
            }));
        }
        // Every client connected before the disposal (a later connect would
        // be refused, which is not what this test is about).
        await Net.WaitForAsync(() => { lock (echoes) return echoes.Count == 40; }, "40 connections accepted");
        await Net.WaitForAsync(() => listener.Server.Statistics.BytesSent > 4u << 20, "echo traffic");
        await listener.DisposeAsync().AsTask().WaitAsync(Net.Token());
        stopClients.Cancel();
        await Task.WhenAll(clients).WaitAsync(Net.Token());
        await acceptor.WaitAsync(Net.Token());
        Task[] all;
        lock (echoes) all = echoes.ToArray();
        await Task.WhenAll(all.Select(t => t.ContinueWith(_ => { }))).WaitAsync(Net.Token());
    }
}
