// The event-style API's networking in both delivery modes (moved from the
// Mono suite): the listening address, dual stack, outbound connections with
// OnConnectFailed, and OnLog seeing descriptor exhaustion.
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Xunit;
using static IocpSrv.Tests.Blocking;

namespace IocpSrv.Tests;

public class NetTests
{
    private static int Code(Action a)
    {
        try { a(); }
        catch (IocpException e) { return e.Code; }
        catch (ArgumentException) { return 1; }
        return 0;
    }

    internal static ushort FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        ushort port = (ushort)((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void ListenAddressAndDualStack(IocpDelivery mode)
    {
        using (var s = new IocpServer(new IocpServerOptions { Mode = mode, Port = 0 }))
            Assert.Equal("127.0.0.1", s.ListenAddress);
        using var connected = new ManualResetEventSlim();
        string? peer = null;
        var o = new IocpServerOptions { Mode = mode, Port = 0, Bind = "::", DualStack = true };
        o.OnConnect = (srv, id, address, port) => { peer = address; connected.Set(); return true; };
        using (var s = new IocpServer(o))
        {
            Assert.Equal("::", s.ListenAddress);
            using var c = new TcpClient(AddressFamily.InterNetwork);
            c.Connect(IPAddress.Loopback, s.Port);
            Assert.True(connected.Wait(TimeoutMs), "connected");
            Assert.Equal("127.0.0.1", peer);   // an IPv4 peer of a dual-stack server
        }
        Expect(IocpErrors.EInval, () => new IocpServer(new IocpServerOptions { Mode = mode, Port = 0, DualStack = true }).Dispose());
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void ConnectEchoAndRefused(IocpDelivery mode)
    {
        var target = new IocpServerOptions { Mode = mode, Port = 0 };
        target.OnData = (srv, id, data) => srv.Send(id, data);
        var got = new List<byte>();
        using var echoed = new ManualResetEventSlim();
        using var failedEv = new ManualResetEventSlim();
        using var ended = new ManualResetEventSlim();
        int failure = 0;
        var o = new IocpServerOptions { Mode = mode, Port = 0 };
        o.OnData = (srv, id, data) => { lock (got) { got.AddRange(data); if (got.Count >= 5) echoed.Set(); } };
        o.OnConnectFailed = (srv, id, error) => { failure = error; failedEv.Set(); };
        o.OnDisconnect = (srv, id, reason) => ended.Set();
        using var t = new IocpServer(target);
        using var s = new IocpServer(o);
        ulong id = s.Connect("127.0.0.1", t.Port);
        s.Send(id, Encoding.ASCII.GetBytes("hello"));
        Assert.True(echoed.Wait(TimeoutMs), "the bytes come back from the echo target");
        lock (got) Assert.Equal("hello", Encoding.ASCII.GetString(got.ToArray()));
        s.Close(id);
        Assert.True(ended.Wait(TimeoutMs), "OnDisconnect after Close");

        ulong bad = s.Connect("127.0.0.1", FreePort());
        Assert.True(failedEv.Wait(TimeoutMs), "OnConnectFailed");
        Assert.Equal(IocpErrors.EConnRefused, failure);
        Assert.Equal(IocpErrors.ENotFound, Code(() => s.Send(bad, new byte[1])));   // a failed id is stale
        Assert.Equal(IocpErrors.EInval, Code(() => s.Connect("localhost", 80)));     // no DNS
        Assert.Equal(1, Code(() => s.Connect("127.0.0.1", 0)));                      // ArgumentException
        Assert.Equal(1, Code(() => s.Connect(null!, 80)));
    }
}

// Lowers the process's descriptor limit: alone, after every other test
// (the other tests' sockets would fail meanwhile).
[CollectionDefinition(nameof(DescriptorLimit), DisableParallelization = true)]
public class DescriptorLimit { }

[Collection(nameof(DescriptorLimit))]
public class LogTests
{
    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit { public ulong Cur; public ulong Max; }

    [DllImport("libc", SetLastError = true)] private static extern int getrlimit(int resource, out RLimit r);
    [DllImport("libc", SetLastError = true)] private static extern int setrlimit(int resource, ref RLimit r);
    [DllImport("libc", SetLastError = true)] private static extern int dup(int fd);
    [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
    private const int RlimitNofile = 7;   // Linux

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void LogSeesDescriptorExhaustion(IocpDelivery mode)
    {
        Assert.True(OperatingSystem.IsLinux(), "the limit is lowered through Linux's libc");
        using var warn = new ManualResetEventSlim();
        using var info = new ManualResetEventSlim();
        using var connected = new ManualResetEventSlim();
        string? text = null;
        var o = new IocpServerOptions { Mode = mode, Port = 0, AcceptsPosted = 1 };
        o.OnLog = (srv, level, code, t) =>
        {
            if (level == IocpLogLevel.Warn && code == IocpErrors.EMFile) { text = t; warn.Set(); }
            if (level == IocpLogLevel.Info) info.Set();
        };
        o.OnConnect = (srv, id, address, port) => { connected.Set(); return true; };
        using var s = new IocpServer(o);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.Equal(0, getrlimit(RlimitNofile, out RLimit old));
        int highest = Directory.GetFiles("/proc/self/fd").Max(f => int.Parse(Path.GetFileName(f)));
        RLimit low = old;
        low.Cur = (ulong)highest + 1;
        var fill = new List<int>();
        bool saw;
        Assert.Equal(0, setrlimit(RlimitNofile, ref low));
        try
        {
            for (int fd; (fd = dup(0)) >= 0;) fill.Add(fd);
            client.Connect(IPAddress.Loopback, s.Port);
            saw = warn.Wait(TimeoutMs);
        }
        finally
        {
            setrlimit(RlimitNofile, ref old);
            foreach (int fd in fill) close(fd);
        }
        Assert.True(saw, "OnLog: Warn, EMFile");
        Assert.Contains("descriptors", text);
        Assert.True(info.Wait(TimeoutMs), "OnLog: Info when accepting again");
        Assert.True(connected.Wait(TimeoutMs), "the waiting client is served");
    }
}
