// The C# wrapper in both delivery modes (IocpDelivery.Queue, the batched
// default, and IocpDelivery.Callbacks): echo with the per-connection order
// checked, refusal, Dispose delivering every OnDisconnect, exceptions to
// OnError, Dispose inside a handler refused, OnDataSegment. Built with the
// binding's sources (sample_clients/csharp/IocpSrv/*.cs) by mcs and run on
// Mono against libiocpsrv.so. Prints one line per check and "N passed, M
// failed"; every wait has a deadline.
using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using IocpSrv;

internal static class QueueTest
{
    private const int Timeout = 30000;
    private static int passed, failed;

    private static void Check(bool ok, string what)
    {
        if (ok) passed++; else failed++;
        Console.WriteLine((ok ? "PASS " : "FAIL ") + what);
    }

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
                string st;
                if (connecting)
                {
                    if (state.ContainsKey(id)) Violations++;
                    state[id] = "open";
                }
                else if (!state.TryGetValue(id, out st) || st != "open") Violations++;
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
            DateTime end = DateTime.UtcNow.AddMilliseconds(Timeout);
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

    private static TcpClient Connect(ushort port)
    {
        var c = new TcpClient();
        c.ReceiveTimeout = Timeout;
        c.SendTimeout = Timeout;
        c.Connect(IPAddress.Loopback, port);
        return c;
    }

    private static bool Echo(TcpClient c, byte[] msg)
    {
        var st = c.GetStream();
        st.Write(msg, 0, msg.Length);
        var got = new byte[msg.Length];
        int n = 0;
        while (n < got.Length)
        {
            int k = st.Read(got, n, got.Length - n);
            if (k <= 0) return false;
            n += k;
        }
        for (int i = 0; i < msg.Length; i++) if (got[i] != msg[i]) return false;
        return true;
    }

    private static void EchoAndOrder(IocpDelivery mode, bool segments)
    {
        string m = mode + (segments ? " OnDataSegment" : " OnData") + ": ";
        var r = new Recorder();
        using (var s = new IocpServer(r.Options(mode, segments)))
        {
            var clients = new List<TcpClient>();
            bool ok = true;
            for (int i = 0; i < 10; i++) clients.Add(Connect(s.Port));
            for (int k = 0; k < 5; k++)
                foreach (var c in clients) ok &= Echo(c, System.Text.Encoding.ASCII.GetBytes("msg " + k));
            Check(ok, m + "10 connections echo byte-exact");
            foreach (var c in clients) c.Close();
            Check(r.WaitFor(() => r.Disconnects == 10), m + "every connection ends once");
        }
        Check(r.Connects == 10 && r.Violations == 0 && r.Errors == 0, m + "order kept, no overlap, stale ids");
    }

    private static void DisposeDeliversDisconnects(IocpDelivery mode)
    {
        var r = new Recorder();
        var s = new IocpServer(r.Options(mode, false));
        var clients = new List<TcpClient>();
        for (int i = 0; i < 5; i++) clients.Add(Connect(s.Port));
        Check(r.WaitFor(() => r.Connects == 5), mode + ": 5 connected");
        s.Dispose();
        int n = r.Disconnects;
        Check(n == 5 && r.Reasons.TrueForAll(x => x == IocpReason.Destroy),
              mode + ": Dispose ran OnDisconnect(Destroy) for each open connection");
        s.Dispose();
        Check(r.Disconnects == n && r.Violations == 0, mode + ": nothing after Dispose");
        foreach (var c in clients) c.Close();
    }

    private static void Refusal(IocpDelivery mode)
    {
        var r = new Recorder { Refuse = true };
        using (var s = new IocpServer(r.Options(mode, false)))
        {
            bool ended = false;
            try
            {
                using (var c = Connect(s.Port))
                {
                    r.WaitFor(() => r.Connects == 1);
                    c.GetStream().Write(new byte[] { 1 }, 0, 1);
                    ended = c.GetStream().Read(new byte[4], 0, 4) == 0;
                }
            }
            catch (Exception)
            {
                ended = true;   // the reset
            }
            Check(ended && r.WaitFor(() => r.Connects == 1), mode + ": a refused peer is cut off");
        }
        Check(r.Disconnects == 0 && r.Datas == 0 && r.Violations == 0, mode + ": no other handler for it");
    }

    private static void ErrorsAndDisposeInside(IocpDelivery mode)
    {
        int code = 0;
        int errors = 0;
        var done = new ManualResetEvent(false);
        var o = new IocpServerOptions { Port = 0, Mode = mode };
        o.OnData = (s, id, data) =>
        {
            try { s.Dispose(); } catch (IocpException e) { code = e.Code; }
            done.Set();
            throw new InvalidOperationException("boom");
        };
        o.OnError = (s, where, e) => { if (where == "OnData" && e is InvalidOperationException) Interlocked.Increment(ref errors); };
        using (var s = new IocpServer(o))
        using (var c = Connect(s.Port))
        {
            c.GetStream().Write(new byte[] { 1 }, 0, 1);
            Check(done.WaitOne(Timeout), mode + ": OnData ran");
            c.Close();
        }
        Check(code == IocpErrors.EInCallback, mode + ": Dispose inside a handler is EInCallback");
        Check(errors == 1, mode + ": the handler's exception went to OnError");
    }

    private static int Main()
    {
        IocpLibrary.EnsureCompatible();
        foreach (IocpDelivery mode in new[] { IocpDelivery.Queue, IocpDelivery.Callbacks })
        {
            EchoAndOrder(mode, false);
            if (mode == IocpDelivery.Queue) EchoAndOrder(mode, true);
            DisposeDeliversDisconnects(mode);
            Refusal(mode);
            ErrorsAndDisposeInside(mode);
        }
        Check(new IocpServerOptions().Mode == IocpDelivery.Queue, "queue mode is the default");
        bool refused = false;
        try { new IocpServer(new IocpServerOptions { Port = 0, Mode = IocpDelivery.Callbacks, OnDataSegment = (s, i, d) => { } }).Dispose(); }
        catch (ArgumentException) { refused = true; }
        Check(refused, "OnDataSegment needs queue mode");
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }
}
