// Helpers of the tests: loopback clients with time-outs, waiting on a
// condition (never a sleep as synchronisation).
using System.Net;
using System.Net.Sockets;

namespace IocpSrv.Tests;

internal static class Net
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public static CancellationToken Token() => new CancellationTokenSource(Timeout).Token;

    public static async Task<Socket> ConnectAsync(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), Token());
        return s;
    }

    public static async Task<byte[]> ReceiveExactlyAsync(Socket s, int count)
    {
        var buf = new byte[count];
        int n = 0;
        while (n < count)
        {
            int r = await s.ReceiveAsync(buf.AsMemory(n), SocketFlags.None, Token());
            if (r == 0) throw new EndOfStreamException($"{n} of {count} bytes");
            n += r;
        }
        return buf;
    }

    // Reads until the peer's FIN; the bytes read. A reset throws.
    public static async Task<int> DrainToEndAsync(Socket s)
    {
        var buf = new byte[65536];
        int total = 0;
        for (;;)
        {
            int r = await s.ReceiveAsync(buf, SocketFlags.None, Token());
            if (r == 0) return total;
            total += r;
        }
    }

    public static void Reset(Socket s)
    {
        s.LingerState = new LingerOption(true, 0);
        s.Close();
    }

    public static async Task WaitForAsync(Func<bool> condition, string what)
    {
        var end = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > end) throw new TimeoutException(what);
            await Task.Delay(5);   // polling a condition, not synchronising on time
        }
    }

    public static IPEndPoint Loopback0 => new IPEndPoint(IPAddress.Loopback, 0);
}
