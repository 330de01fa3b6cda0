// Helpers of the tests ported from the Mono suites: blocking loopback
// clients with time-outs, waiting on a condition (never a sleep as
// synchronisation), and the code of an IocpException.
using System.Net;
using System.Net.Sockets;
using Xunit;

namespace IocpSrv.Tests;

internal static class Blocking
{
    public const int TimeoutMs = 30000;

    public static Socket Connect(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)
        {
            ReceiveTimeout = TimeoutMs,
            SendTimeout = TimeoutMs,
        };
        s.Connect(new IPEndPoint(IPAddress.Loopback, port));
        return s;
    }

    // Waits until cond() holds; false after the time-out.
    public static bool WaitFor(Func<bool> cond)
    {
        DateTime end = DateTime.UtcNow.AddMilliseconds(TimeoutMs);
        while (!cond())
        {
            if (DateTime.UtcNow > end) return false;
            Thread.Sleep(5);   // polling a condition, not synchronising on time
        }
        return true;
    }

    // True when the peer ended the connection (FIN or reset) with no bytes.
    public static bool Ended(Socket s)
    {
        try { return s.Receive(new byte[16]) == 0; }
        catch (SocketException) { return true; }
    }

    // True when a connection is ended at once with no bytes; the reset may
    // come before Connect returns.
    public static bool Refused(int port)
    {
        Socket s;
        try { s = Connect(port); }
        catch (SocketException) { return true; }
        using (s) return Ended(s);
    }

    public static void Expect(int code, Action action)
    {
        var e = Assert.Throws<IocpException>(action);
        Assert.Equal(code, e.Code);
    }

    // True when every byte of msg comes back.
    public static bool Echo(Socket c, byte[] msg)
    {
        c.Send(msg);
        var got = new byte[msg.Length];
        int n = 0;
        while (n < got.Length)
        {
            int k = c.Receive(got, n, got.Length - n, SocketFlags.None);
            if (k <= 0) return false;
            n += k;
        }
        return got.AsSpan().SequenceEqual(msg);
    }
}
