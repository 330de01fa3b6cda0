// TLS through the C# binding on Mono (the event-style API, DllImport): a
// TLS server given the C suites' identity (PKCS#12 bytes and password,
// IOCP_TEST_CERTS) echoes to an outbound TLS connection of a second server
// that verifies it against its certificate; both sides read what the
// handshake settled; a wrong password is EPassword. Both delivery modes.
// Prints one line per check and "N passed, M failed"; every wait has a
// deadline, nothing sleeps.
using System;
using System.IO;
using System.Security.Authentication;
using System.Threading;
using IocpSrv;

internal static class TlsTest
{
    private const int Timeout = 30000;
    private static int passed, failed;

    private static void Check(bool ok, string what)
    {
        if (ok) passed++; else failed++;
        Console.WriteLine((ok ? "PASS " : "FAIL ") + what);
    }

    private static void EchoOverTls(IocpDelivery mode, string certs)
    {
        string m = mode + ": ";
        IocpTlsInfo serverInfo = null, clientInfo = null;
        var target = new IocpServerOptions { Mode = mode, Port = 0 };
        target.Tls = IocpTlsOptions.FromPkcs12(File.ReadAllBytes(Path.Combine(certs, "ecdsa.p12")), "secret");
        target.Tls.AlpnProtocols = new[] { "h2", "http/1.1" };
        target.OnConnect = (srv, id, a, p) => { serverInfo = srv.GetTlsInfo(id); return true; };
        target.OnData = (srv, id, data) => srv.Send(id, data);
        var got = new MemoryStream();
        var echoed = new ManualResetEvent(false);
        var o = new IocpServerOptions { Mode = mode, Port = 0 };
        o.OnConnect = (srv, id, a, p) =>
        {
            clientInfo = srv.GetTlsInfo(id);
            srv.Send(id, System.Text.Encoding.ASCII.GetBytes("hello tls"));
            return true;
        };
        o.OnData = (srv, id, data) => { lock (got) { got.Write(data, 0, data.Length); if (got.Length >= 9) echoed.Set(); } };
        using (var t = new IocpServer(target))
        using (var s = new IocpServer(o))
        {
            var tls = new IocpTlsClientOptions
            {
                TargetHost = "localhost",
                TrustedCaPem = File.ReadAllText(Path.Combine(certs, "ecdsa.pem")),
                AlpnProtocols = new[] { "http/1.1" },
            };
            s.Connect("127.0.0.1", t.Port, tls);
            Check(echoed.WaitOne(Timeout), m + "the bytes come back over TLS");
            lock (got) Check(System.Text.Encoding.ASCII.GetString(got.ToArray()) == "hello tls", m + "byte-exact");
            Check(clientInfo != null && serverInfo != null && clientInfo.ToString() == serverInfo.ToString(),
                  m + "both sides read the same handshake: " + serverInfo);
            Check(serverInfo != null && serverInfo.SslProtocol == (SslProtocols)12288 &&
                  serverInfo.ApplicationProtocol == "http/1.1" && serverInfo.CipherSuiteName.StartsWith("TLS_"),
                  m + "TLS 1.3, ALPN http/1.1, an IANA cipher name");
            Check(t.Statistics.TlsHandshakes == 1 && s.Statistics.TlsHandshakes == 1, m + "one handshake counted on each side");
        }
        int code = 0;
        try
        {
            new IocpServer(new IocpServerOptions
            {
                Mode = mode, Port = 0,
                Tls = IocpTlsOptions.FromPkcs12(File.ReadAllBytes(Path.Combine(certs, "ecdsa.p12")), "wrong"),
            }).Dispose();
        }
        catch (IocpException e) { code = e.Code; }
        Check(code == IocpErrors.EPassword, m + "a wrong password is EPassword");
    }

    private static int Main()
    {
        string certs = Environment.GetEnvironmentVariable("IOCP_TEST_CERTS");
        if (string.IsNullOrEmpty(certs))
        {
            Console.WriteLine("FAIL IOCP_TEST_CERTS names the folder of test/c/support/make_certs.sh's identities");
            return 1;
        }
        foreach (var mode in new[] { IocpDelivery.Queue, IocpDelivery.Callbacks })
            EchoOverTls(mode, certs);
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }
}
