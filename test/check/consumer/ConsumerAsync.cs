// The Task and Pipelines API as a .NET Framework user of the IocpSrv NuGet
// package writes it (check_nupkg.py: a net472 project, run on Mono, so the
// package's net462 assembly and its downlevel packages): await using,
// await foreach over AcceptAllAsync, an outbound ConnectAsync to the same
// listener, echo through the pipes, half-close both ways, StopAsync.
// Exits 0 and prints "ok" on success.
using System;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using IocpSrv;

public static class ConsumerAsync
{
    public static async Task<int> Main(string[] args)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await using var listener = IocpListener.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        Task echo = Task.Run(async () =>
        {
            await foreach (IocpConnection c in listener.AcceptAllAsync(cts.Token))
            {
                await using (c)
                {
                    await c.Input.CopyToAsync(c.Output, cts.Token);
                    await c.Output.CompleteAsync();
                    await c.Ended;
                }
                return;
            }
        });
        await using (IocpConnection c = await listener.ConnectAsync(listener.LocalEndPoint, cts.Token))
        {
            await c.Output.WriteAsync(Encoding.ASCII.GetBytes("pipes"), cts.Token);
            await c.Output.CompleteAsync();
            var got = new StringBuilder();
            for (;;)
            {
                ReadResult r = await c.Input.ReadAsync(cts.Token);
                foreach (ReadOnlyMemory<byte> m in r.Buffer) got.Append(Encoding.ASCII.GetString(m.ToArray()));
                c.Input.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted) break;
            }
            if (got.ToString() != "pipes") { Console.WriteLine("echo returned " + got); return 4; }
        }
        await echo;
        await listener.StopAsync(cts.Token);
        if (listener.Statistics.ConnectionsAccepted != 1) { Console.WriteLine("accepted " + listener.Statistics.ConnectionsAccepted); return 5; }
        Console.WriteLine("ok");
        return 0;
    }
}
