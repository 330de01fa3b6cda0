// The C# wrapper's 1.1 networking: ListenAddress, DualStack, Connect with
// OnConnectFailed, and OnLog seeing descriptor exhaustion (Linux: the
// descriptor limit is lowered through libc). Built with the binding's sources
// (sample_clients/csharp/IocpSrv/*.cs) by mcs and run on Mono against
// libiocpsrv.so. Prints one line per check and "N passed, M failed"; every
// wait has a deadline, nothing sleeps.
using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading;
using IocpSrv;

internal static class NetTest
{
    private const int Timeout = 30000;
    private static int passed, failed;
    // Every test runs in both delivery modes (queue, the default, first).
    private static IocpDelivery Mode = IocpDelivery.Queue;

    private static void Check(bool ok, string what)
    {
        if (ok) passed++; else failed++;
        Console.WriteLine((ok ? "PASS " : "FAIL ") + what);
    }

    private static int Code(Action a)
    {
        try { a(); }
        catch (IocpException e) { return e.Code; }
        catch (ArgumentException) { return 1; }
        return 0;
    }

    private static ushort FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        ushort port = (ushort)((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    private static void ListenAddressAndDualStack()
    {
        using (var s = new IocpServer(new IocpServerOptions { Mode = Mode, Port = 0 }))
            Check(s.ListenAddress == "127.0.0.1", "ListenAddress is 127.0.0.1 by default");
        var connected = new ManualResetEvent(false);
        string peer = null;
        var o = new IocpServerOptions { Mode = Mode, Port = 0, Bind = "::", DualStack = true };
        o.OnConnect = (srv, id, address, port) => { peer = address; connected.Set(); return true; };
        using (var s = new IocpServer(o))
        {
            Check(s.ListenAddress == "::", "ListenAddress of a dual-stack server is ::");
            using (var c = new TcpClient(AddressFamily.InterNetwork))
            {
                c.Connect(IPAddress.Loopback, s.Port);
                Check(connected.WaitOne(Timeout) && peer == "127.0.0.1", "dual stack: an IPv4 peer as 127.0.0.1");
            }
        }
        Check(Code(() => new IocpServer(new IocpServerOptions { Mode = Mode, Port = 0, DualStack = true }).Dispose()) == IocpErrors.EInval,
              "DualStack with an IPv4 Bind is EInval");
    }

    private static void ConnectEchoAndRefused()
    {
        var target = new IocpServerOptions { Mode = Mode, Port = 0 };
        target.OnData = (srv, id, data) => srv.Send(id, data);
        var got = new List<byte>();
        var echoed = new ManualResetEvent(false);
        var failedEv = new ManualResetEvent(false);
        var ended = new ManualResetEvent(false);
        int failure = 0;
        var o = new IocpServerOptions { Mode = Mode, Port = 0 };
        o.OnData = (srv, id, data) => { lock (got) { got.AddRange(data); if (got.Count >= 5) echoed.Set(); } };
        o.OnConnectFailed = (srv, id, error) => { failure = error; failedEv.Set(); };
        o.OnDisconnect = (srv, id, reason) => ended.Set();
        using (var t = new IocpServer(target))
        using (var s = new IocpServer(o))
        {
            ulong id = s.Connect("127.0.0.1", t.Port);
            s.Send(id, System.Text.Encoding.ASCII.GetBytes("hello"));
            Check(echoed.WaitOne(Timeout), "Connect: the bytes come back from the echo target");
            lock (got) Check(System.Text.Encoding.ASCII.GetString(got.ToArray()) == "hello", "Connect: byte-exact");
            s.Close(id);
            Check(ended.WaitOne(Timeout), "Connect: OnDisconnect after Close");

            ulong bad = s.Connect("127.0.0.1", FreePort());
            Check(failedEv.WaitOne(Timeout) && failure == IocpErrors.EConnRefused, "OnConnectFailed(EConnRefused)");
            Check(Code(() => s.Send(bad, new byte[1])) == IocpErrors.ENotFound, "a failed id is stale");
            Check(Code(() => s.Connect("localhost", 80)) == IocpErrors.EInval, "host names are EInval (no DNS)");
            Check(Code(() => s.Connect("127.0.0.1", 0)) == 1, "port 0 is an ArgumentException");
            Check(Code(() => s.Connect(null, 80)) == 1, "a null host is an ArgumentException");
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit { public ulong Cur; public ulong Max; }

    [DllImport("libc", SetLastError = true)] private static extern int getrlimit(int resource, out RLimit r);
    [DllImport("libc", SetLastError = true)] private static extern int setrlimit(int resource, ref RLimit r);
    [DllImport("libc", SetLastError = true)] private static extern int dup(int fd);
    [DllImport("libc", SetLastError = true)] private static extern int close(int fd);
    private const int RlimitNofile = 7; // Linux

    private static void LogSeesDescriptorExhaustion()
    {
        var warn = new ManualResetEvent(false);
        var info = new ManualResetEvent(false);
        var connected = new ManualResetEvent(false);
        string text = null;
        var o = new IocpServerOptions { Mode = Mode, Port = 0, AcceptsPosted = 1 };
        o.OnLog = (srv, level, code, t) =>
        {
            if (level == IocpLogLevel.Warn && code == IocpErrors.EMFile) { text = t; warn.Set(); }
            if (level == IocpLogLevel.Info) info.Set();
        };
        o.OnConnect = (srv, id, address, port) => { connected.Set(); return true; };
        using (var s = new IocpServer(o))
        using (var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            RLimit old, low;
            getrlimit(RlimitNofile, out old);
            int highest = 0;
            foreach (var entry in System.IO.Directory.GetFiles("/proc/self/fd"))
                highest = Math.Max(highest, int.Parse(System.IO.Path.GetFileName(entry)));
            low = old;
            low.Cur = (ulong)highest + 1;
            var fill = new List<int>();
            bool saw;
            setrlimit(RlimitNofile, ref low);
            try
            {
                for (int fd; (fd = dup(0)) >= 0; ) fill.Add(fd);
                client.Connect(IPAddress.Loopback, s.Port);
                saw = warn.WaitOne(Timeout);
            }
            finally
            {
                setrlimit(RlimitNofile, ref old);
                foreach (int fd in fill) close(fd);
            }
            Check(saw && text != null && text.Contains("descriptors"), "OnLog: Warn, EMFile, out of descriptors");
            Check(info.WaitOne(Timeout), "OnLog: Info when accepting again");
            Check(connected.WaitOne(Timeout), "the waiting client is served");
        }
    }

    private static int Main()
    {
        foreach (var mode in new[] { IocpDelivery.Queue, IocpDelivery.Callbacks })
        {
            Mode = mode;
            ListenAddressAndDualStack();
            ConnectEchoAndRefused();
            if (Environment.OSVersion.Platform == PlatformID.Unix) LogSeesDescriptorExhaustion();
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }
}
