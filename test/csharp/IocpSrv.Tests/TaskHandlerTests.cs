// OnDataAsync, the Task-returning handler of the event-style API: awaited,
// in order per connection, exceptions reported through OnError after an
// await too (never lost, never fatal).
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;
using Xunit;

namespace IocpSrv.Tests;

public class TaskHandlerTests
{
    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public async Task ExceptionsAfterAnAwaitAreReportedAndTheServerGoesOn(IocpDelivery mode)
    {
        var errors = new ConcurrentQueue<(string, Exception)>();
        var options = new IocpServerOptions { Port = 0, Mode = mode };
        options.OnDataAsync = async (s, id, data) =>
        {
            await Task.Yield();
            if (data[0] == (byte)'!') throw new InvalidOperationException("after an await");
            s.Send(id, data);
        };
        options.OnError = (s, where, e) => errors.Enqueue((where, e));
        using var server = new IocpServer(options);
        using Socket c = await Net.ConnectAsync(server.Port);
        await c.SendAsync(Encoding.ASCII.GetBytes("!"));
        await Net.WaitForAsync(() => !errors.IsEmpty, "OnError");
        var (where, error) = errors.Single();
        Assert.Equal("OnDataAsync", where);
        Assert.IsType<InvalidOperationException>(error);
        await c.SendAsync(Encoding.ASCII.GetBytes("ok"));
        Assert.Equal("ok", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(c, 2)));
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public async Task SlowTasksKeepTheBytesInOrder(IocpDelivery mode)
    {
        var options = new IocpServerOptions { Port = 0, Mode = mode };
        long running = 0, overlapped = 0;
        options.OnDataAsync = async (s, id, data) =>
        {
            if (Interlocked.Increment(ref running) > 1) Interlocked.Increment(ref overlapped);
            await Task.Delay(1);   // some asynchronous work
            s.Send(id, data);
            Interlocked.Decrement(ref running);
        };
        using var server = new IocpServer(options);
        using Socket c = await Net.ConnectAsync(server.Port);
        var sent = new MemoryStream();
        for (int i = 0; i < 200; i++)
        {
            byte[] chunk = Encoding.ASCII.GetBytes(i + ",");
            sent.Write(chunk);
            await c.SendAsync(chunk);
        }
        byte[] back = await Net.ReceiveExactlyAsync(c, (int)sent.Length);
        Assert.Equal(Encoding.ASCII.GetString(sent.ToArray()), Encoding.ASCII.GetString(back));
        Assert.Equal(0, Interlocked.Read(ref overlapped));   // one connection's tasks never overlap
        await Net.WaitForAsync(() => server.PendingDataTasks == 0, "tasks finished");
    }
}
