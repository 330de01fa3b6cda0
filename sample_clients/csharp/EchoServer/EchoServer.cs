// The original library's tutorial in C# on the P/Invoke binding: an echo server.
//
//   EchoServer.exe [--port N] [--bind ADDR] [--threads N] [--mode queue|callbacks]
//                  [--tls CERT.p12 [--tls-password TEXT]]
//
// --port defaults to 50000 (0 picks a free port), --bind to 127.0.0.1,
// --threads to the library's default (one per processor; in queue mode one
// fewer, at least one), --mode to queue (batches drained by one
// thread of the wrapper; "callbacks" runs the handler on library workers).
// With --tls every connection speaks TLS, done by the library, with the
// identity in the PKCS#12 file CERT.p12 (its password --tls-password,
// default empty); a file that cannot be read or opened ends it with exit
// code 1. Prints "listening on port N" when ready and
// exits cleanly when Enter is pressed or standard input ends.
//
// Build: dotnet build -c Release EchoServer.csproj   (.NET SDK; the binding
//        comes in as ../IocpSrv/IocpSrv.csproj), or with Mono:
//        mcs -out:EchoServer.exe EchoServer.cs ../IocpSrv/*.cs
using System;
using System.IO;
using IocpSrv;

public static class EchoServer
{
    // Echo every byte back. A peer that sends but never reads fills its
    // queue: past PauseMark queued bytes its receiving pauses (its bytes wait
    // in the kernel, and TCP slows the writer down), and resumes when the
    // queue has drained to ResumeMark (OnDrain). Memory stays bounded and a
    // fast writer is slowed, not cut off.
    private const ulong PauseMark = 1 << 20;
    private const ulong ResumeMark = 256 << 10;

    private static void OnData(IocpServer server, ulong id, byte[] data)
    {
        OnDataSegment(server, id, new ArraySegment<byte>(data));
    }

    // Queue mode: the bytes in the wrapper's reused buffer, sent straight back.
    private static void OnDataSegment(IocpServer server, ulong id, ArraySegment<byte> data)
    {
        try
        {
            server.Send(id, data);
            // Handlers of one connection never overlap, so OnDrain runs after
            // this pause even when the queue drains at once.
            if (server.Queued(id) > PauseMark) server.PauseReceive(id);
        }
        catch (IocpException e)
        {
            // The marks keep the queue far below MaxSendQueue (8 MiB), so a
            // full queue means a broken promise: cut that peer off.
            if (e.Code == IocpErrors.EQueueFull) server.Close(id);
            // Any other refusal (the connection is closing) needs nothing from us.
        }
    }

    private static void OnDrain(IocpServer server, ulong id, ulong queued)
    {
        try { server.ResumeReceive(id); }
        catch (IocpException) { }   // closing meanwhile
    }

    private static bool ParseUInt(string text, uint max, out uint value)
    {
        value = 0;
        if (string.IsNullOrEmpty(text)) return false;
        foreach (char c in text)
            if (c < '0' || c > '9') return false;
        ulong v;
        if (!ulong.TryParse(text, out v) || v > max) return false;
        value = (uint)v;
        return true;
    }

    private static int Usage()
    {
        Console.Error.WriteLine("usage: EchoServer [--port N] [--bind ADDR] [--threads N] [--mode queue|callbacks] " +
                                "[--tls CERT.p12 [--tls-password TEXT]]");
        return 2;
    }

    public static int Main(string[] args)
    {
        uint port = 50000, threads = 0;
        string bind = "127.0.0.1", tls = null, tlsPassword = null;
        var mode = IocpDelivery.Queue;

        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i], val = i + 1 < args.Length ? args[i + 1] : null;
            if (arg == "--port" && ParseUInt(val, 65535, out port)) i++;
            else if (arg == "--threads" && ParseUInt(val, 1024, out threads)) i++;
            else if (arg == "--bind" && val != null) { bind = val; i++; }
            else if (arg == "--mode" && val == "queue") { mode = IocpDelivery.Queue; i++; }
            else if (arg == "--mode" && val == "callbacks") { mode = IocpDelivery.Callbacks; i++; }
            else if (arg == "--tls" && val != null) { tls = val; i++; }
            else if (arg == "--tls-password" && val != null) { tlsPassword = val; i++; }
            else return Usage();
        }
        if (tlsPassword != null && tls == null) return Usage();

        try
        {
            IocpLibrary.EnsureCompatible();
        }
        catch (IocpLibraryException e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }

        var options = new IocpServerOptions();
        options.Port = (ushort)port;
        options.Bind = bind;
        options.Threads = threads;
        options.Mode = mode;
        options.DrainMark = ResumeMark;
        options.OnDrain = OnDrain;
        if (tls != null)
        {
            try
            {
                options.Tls = IocpTlsOptions.FromPkcs12(File.ReadAllBytes(tls), tlsPassword);
            }
            catch (Exception e)
            {
                if (!(e is IOException) && !(e is UnauthorizedAccessException)) throw;
                Console.Error.WriteLine(tls + ": " + e.Message);
                return 1;
            }
        }
        if (mode == IocpDelivery.Queue)
            options.OnDataSegment = OnDataSegment;
        else
            options.OnData = OnData;

        IocpServer server;
        try
        {
            server = new IocpServer(options);
        }
        catch (IocpException e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }

        using (server)
        {
            Console.Out.WriteLine("listening on port " + server.Port);
            Console.Out.Flush();
            Console.In.ReadLine();   // Enter, or null at end of input
            IocpStatistics st = server.Statistics;
            Console.Out.WriteLine("served " + st.ConnectionsAccepted + " connections, " +
                                  st.BytesReceived + " bytes in, " + st.BytesSent + " bytes out");
        }
        return 0;
    }
}
