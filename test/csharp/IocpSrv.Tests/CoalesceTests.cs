// IocpListenerOptions.CoalesceFlushes: flushed bytes that wait for the
// application's next read still reach the peer, in order, when it never
// reads (the thread-pool item), when it completes Output, and when it reads.
using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text;
using Xunit;

namespace IocpSrv.Tests;

public class CoalesceTests
{
    private static async Task<(IocpListener, Socket, IocpConnection)> OpenAsync()
    {
        var listener = IocpListener.Listen(Net.Loopback0, new IocpListenerOptions { CoalesceFlushes = true });
        Socket client = await Net.ConnectAsync(listener.LocalEndPoint.Port);
        IocpConnection c = (await listener.AcceptAsync(Net.Token()))!;
        return (listener, client, c);
    }

    private static async Task WriteAndFlushAsync(IocpConnection c, string text)
    {
        c.Output.Write(Encoding.ASCII.GetBytes(text));
        FlushResult r = await c.Output.FlushAsync(Net.Token());
        Assert.False(r.IsCompleted);
    }

    [Fact]
    public async Task FlushesArriveInOrderWithoutAReadOrAnotherFlush()
    {
        (IocpListener listener, Socket client, IocpConnection c) = await OpenAsync();
        await using (listener)
        using (client)
        {
            await WriteAndFlushAsync(c, "headers+body;");
            await WriteAndFlushAsync(c, "final chunk");
            // Nothing reads Input and nothing more is flushed: the bytes go anyway.
            Assert.Equal("headers+body;final chunk", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(client, 24)));
            await WriteAndFlushAsync(c, "later");
            Assert.Equal("later", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(client, 5)));
        }
    }

    [Fact]
    public async Task CompleteSendsStagedBytesThenFin()
    {
        (IocpListener listener, Socket client, IocpConnection c) = await OpenAsync();
        await using (listener)
        using (client)
        {
            await WriteAndFlushAsync(c, "last words");
            await c.Output.CompleteAsync();
            Assert.Equal("last words", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(client, 10)));
            Assert.Equal(0, await Net.DrainToEndAsync(client));
        }
    }

    [Fact]
    public async Task ARequestResponseLoopAnswersEveryRequest()
    {
        (IocpListener listener, Socket client, IocpConnection c) = await OpenAsync();
        await using (listener)
        using (client)
        {
            // Each request answered in two flushes, then the next read.
            Task server = Task.Run(async () =>
            {
                for (int i = 0; i < 100; i++)
                {
                    ReadResult r = await c.Input.ReadAsync(Net.Token());
                    Assert.False(r.IsCompleted);
                    SequencePosition end = r.Buffer.GetPosition(1);
                    c.Input.AdvanceTo(end);
                    await WriteAndFlushAsync(c, "ab");
                    await WriteAndFlushAsync(c, "c");
                }
            });
            for (int i = 0; i < 100; i++)
            {
                await client.SendAsync(new byte[] { (byte)'?' });
                Assert.Equal("abc", Encoding.ASCII.GetString(await Net.ReceiveExactlyAsync(client, 3)));
            }
            await server.WaitAsync(Net.Token());
        }
    }
}
