// The event-style API's handler contract in both delivery modes (moved from
// the Mono suite): echo with the per-connection order checked, refusal,
// Dispose delivering every OnDisconnect, exceptions to OnError, Dispose
// inside a handler refused, OnDataSegment.
using System.Net.Sockets;
using System.Text;
using Xunit;
using static IocpSrv.Tests.Blocking;

namespace IocpSrv.Tests;

public class QueueModeTests
{
    // Records the events of every connection and checks their order:
    // OnConnect first, OnDisconnect last and once, handlers never overlap.
    private sealed class Recorder
    {
        private readonly object gate = new object();
        private readonly Dictionary<ulong, string> state = new Dictionary<ulong, string>();
        private readonly HashSet<ulong> busy = new HashSet<ulong>();
        public int Connects, Datas, Disconnects, Violations, Errors;
        public readonly List<IocpReason> Reasons = new List<IocpReason>();
        public bool Refuse;

        private void Enter(ulong id, bool connecting)
        {
            lock (gate)
            {
                if (connecting)
                {
                    if (state.ContainsKey(id)) Violations++;
                    state[id] = "open";
                }
                else if (!state.TryGetValue(id, out string? st) || st != "open") Violations++;
                if (!busy.Add(id)) Violations++;
            }
        }

        private void Leave(ulong id)
        {
            lock (gate) { busy.Remove(id); Monitor.PulseAll(gate); }
        }

        public IocpServerOptions Options(IocpDelivery mode, bool segments)
        {
            var o = new IocpServerOptions { Port = 0, Mode = mode };
            o.OnConnect = (s, id, address, port) =>
            {
                Enter(id, true);
                lock (gate) { Connects++; if (Refuse) state[id] = "refused"; }
                Leave(id);
                return !Refuse;
            };
            if (segments)
                o.OnDataSegment = (s, id, data) => { Enter(id, false); s.Send(id, data); lock (gate) Datas++; Leave(id); };
            else
                o.OnData = (s, id, data) => { Enter(id, false); s.Send(id, data); lock (gate) Datas++; Leave(id); };
            o.OnDisconnect = (s, id, reason) =>
            {
                Enter(id, false);
                int rc = 0;
                try { s.Send(id, new byte[] { 1 }); }
                catch (IocpException e) { rc = e.Code; }
                // Callback mode, inside Dispose: the handle is already closed.
                catch (ObjectDisposedException) { rc = IocpErrors.ENotFound; }
                lock (gate)
                {
                    if (rc != IocpErrors.ENotFound) Violations++;   // stale from here on
                    state[id] = "ended";
                    Disconnects++;
                    Reasons.Add(reason);
                }
                Leave(id);
            };
            o.OnError = (s, where, e) => { lock (gate) { Errors++; Monitor.PulseAll(gate); } };
            return o;
        }

        public bool WaitFor(Func<bool> done)
        {
            DateTime end = DateTime.UtcNow.AddMilliseconds(TimeoutMs);
            lock (gate)
            {
                while (!done())
                {
                    int left = (int)(end - DateTime.UtcNow).TotalMilliseconds;
                    if (left <= 0) return false;
                    Monitor.Wait(gate, left);
                }
                return true;
            }
        }
    }

    public static readonly TheoryData<IocpDelivery, bool> ModesAndHandlers = new()
    {
        { IocpDelivery.Queue, false }, { IocpDelivery.Queue, true }, { IocpDelivery.Callbacks, false },
    };

    [Theory, MemberData(nameof(ModesAndHandlers))]
    public void EchoKeepsTheOrderOfEveryConnection(IocpDelivery mode, bool segments)
    {
        var r = new Recorder();
        using (var s = new IocpServer(r.Options(mode, segments)))
        {
            var clients = new List<Socket>();
            for (int i = 0; i < 10; i++) clients.Add(Connect(s.Port));
            for (int k = 0; k < 5; k++)
                foreach (Socket c in clients) Assert.True(Echo(c, Encoding.ASCII.GetBytes("msg " + k)), "byte-exact");
            foreach (Socket c in clients) c.Close();
            Assert.True(r.WaitFor(() => r.Disconnects == 10), "every connection ends once");
        }
        Assert.Equal(10, r.Connects);
        Assert.Equal(0, r.Violations);   // order kept, no overlap, stale ids
        Assert.Equal(0, r.Errors);
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void DisposeDeliversDisconnects(IocpDelivery mode)
    {
        var r = new Recorder();
        var s = new IocpServer(r.Options(mode, false));
        var clients = new List<Socket>();
        for (int i = 0; i < 5; i++) clients.Add(Connect(s.Port));
        Assert.True(r.WaitFor(() => r.Connects == 5), "5 connected");
        s.Dispose();
        int n = r.Disconnects;
        Assert.Equal(5, n);
        Assert.All(r.Reasons, x => Assert.Equal(IocpReason.Destroy, x));
        s.Dispose();
        Assert.Equal(n, r.Disconnects);   // nothing after Dispose
        Assert.Equal(0, r.Violations);
        foreach (Socket c in clients) c.Close();
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void ARefusedPeerIsCutOffAndNoOtherHandlerRuns(IocpDelivery mode)
    {
        var r = new Recorder { Refuse = true };
        using (var s = new IocpServer(r.Options(mode, false)))
        {
            bool ended;
            try
            {
                using Socket c = Connect(s.Port);
                r.WaitFor(() => r.Connects == 1);
                c.Send(new byte[] { 1 });
                ended = c.Receive(new byte[4]) == 0;
            }
            catch (SocketException)
            {
                ended = true;   // the reset
            }
            Assert.True(ended, "cut off");
            Assert.True(r.WaitFor(() => r.Connects == 1), "OnConnect ran");
        }
        Assert.Equal(0, r.Disconnects);
        Assert.Equal(0, r.Datas);
        Assert.Equal(0, r.Violations);
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void DisposeInsideAHandlerIsRefusedAndItsExceptionGoesToOnError(IocpDelivery mode)
    {
        int code = 0, errors = 0;
        using var done = new ManualResetEventSlim();
        var o = new IocpServerOptions { Port = 0, Mode = mode };
        o.OnData = (s, id, data) =>
        {
            try { s.Dispose(); } catch (IocpException e) { code = e.Code; }
            done.Set();
            throw new InvalidOperationException("boom");
        };
        o.OnError = (s, where, e) => { if (where == "OnData" && e is InvalidOperationException) Interlocked.Increment(ref errors); };
        using (var s = new IocpServer(o))
        using (Socket c = Connect(s.Port))
        {
            c.Send(new byte[] { 1 });
            Assert.True(done.Wait(TimeoutMs), "OnData ran");
        }
        Assert.Equal(IocpErrors.EInCallback, code);
        Assert.Equal(1, errors);
    }

    [Fact]
    public void QueueModeIsTheDefaultAndOnDataSegmentNeedsIt()
    {
        Assert.Equal(IocpDelivery.Queue, new IocpServerOptions().Mode);
        Assert.Throws<ArgumentException>(() => new IocpServer(new IocpServerOptions
            { Port = 0, Mode = IocpDelivery.Callbacks, OnDataSegment = (s, i, d) => { } }).Dispose());
    }
}
