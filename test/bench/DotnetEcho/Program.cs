// Echo servers for the .NET benchmark (not a test):
//
//   DotnetEcho --impl pipelines|pipelines-inline|pipelines-coalesce|sockets [--port N]
//
// pipelines: IocpListener, each connection's Input copied to its Output
//            (System.IO.Pipelines over the library); -inline with
//            UnsafePreferInlineScheduling (the echo on the drain thread),
//            -coalesce with CoalesceFlushes (as the Kestrel transport).
// sockets:   System.Net.Sockets as its careful users write it: an accept
//            loop, and per connection one async loop of Socket.ReceiveAsync /
//            SendAsync on Memory<byte> from ArrayPool (ValueTask-based, no
//            allocation per operation).
// Prints "listening on port N"; Enter or the end of input stops it.
using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using IocpSrv;

string impl = "pipelines";
int port = 0;
for (int i = 0; i + 1 < args.Length; i += 2)
{
    if (args[i] == "--impl") impl = args[i + 1];
    else if (args[i] == "--port") port = int.Parse(args[i + 1]);
}
var endPoint = new IPEndPoint(IPAddress.Loopback, port);
using var stop = new CancellationTokenSource();

if (impl is "pipelines" or "pipelines-inline" or "pipelines-coalesce")
{
    var options = new IocpListenerOptions
    {
        UnsafePreferInlineScheduling = impl == "pipelines-inline",
        CoalesceFlushes = impl == "pipelines-coalesce",
    };
    await using var listener = IocpListener.Listen(endPoint, options);
    Console.WriteLine("listening on port " + listener.LocalEndPoint.Port);
    Task accept = Task.Run(async () =>
    {
        await foreach (IocpConnection c in listener.AcceptAllAsync())
            _ = Task.Run(async () =>
            {
                await using (c)
                {
                    try
                    {
                        for (;;)
                        {
                            ReadResult r = await c.Input.ReadAsync();
                            foreach (ReadOnlyMemory<byte> m in r.Buffer) c.Output.Write(m.Span);
                            c.Input.AdvanceTo(r.Buffer.End);
                            FlushResult f = await c.Output.FlushAsync();
                            if (r.IsCompleted || f.IsCompleted) break;
                        }
                    }
                    catch (IOException) { }
                }
            });
    });
    await Task.Run(Console.In.ReadLine);
    await listener.StopAsync(new CancellationToken(true));
}
else if (impl == "sockets")
{
    using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    listener.Bind(endPoint);
    listener.Listen(4096);
    Console.WriteLine("listening on port " + ((IPEndPoint)listener.LocalEndPoint!).Port);
    Task accept = Task.Run(async () =>
    {
        for (;;)
        {
            Socket s;
            try { s = await listener.AcceptAsync(stop.Token); }
            catch (Exception) { return; }
            s.NoDelay = true;
            _ = Task.Run(async () =>
            {
                byte[] buf = ArrayPool<byte>.Shared.Rent(4096);
                try
                {
                    for (;;)
                    {
                        int n = await s.ReceiveAsync(buf.AsMemory(), SocketFlags.None);
                        if (n == 0) break;
                        await s.SendAsync(buf.AsMemory(0, n), SocketFlags.None);
                    }
                }
                catch (SocketException) { }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buf);
                    s.Dispose();
                }
            });
        }
    });
    await Task.Run(Console.In.ReadLine);
    stop.Cancel();
}
else
{
    Console.Error.WriteLine("usage: DotnetEcho --impl pipelines|pipelines-inline|pipelines-coalesce|sockets [--port N]");
    return 2;
}
return 0;
