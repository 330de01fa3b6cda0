// TLS in the C# binding, the library being the TLS server: an SslStream
// client echoes 1 MiB byte for byte at TLS 1.2 and 1.3 through the
// event-style server in both delivery modes and through IocpListener's
// pipes, with close_notify both ways; the identity as PKCS#12 bytes or an
// X509Certificate2; a wrong password and a certificate without its key
// refused at creation; outbound TLS through the listener. The identity is
// made here (ECDSA P-256, self-signed for localhost and 127.0.0.1).
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Xunit;

namespace IocpSrv.Tests;

public class TlsTests
{
    private const string Password = "s3cret";
    private static readonly Lazy<X509Certificate2> Identity = new(MakeIdentity);
    private static readonly byte[] Mib = Enumerable.Range(0, 1 << 20).Select(i => (byte)(i * 7 + (i >> 8))).ToArray();

    public static readonly TheoryData<IocpDelivery, SslProtocols> ModesAndVersions = new()
    {
        { IocpDelivery.Queue, SslProtocols.Tls12 }, { IocpDelivery.Queue, SslProtocols.Tls13 },
        { IocpDelivery.Callbacks, SslProtocols.Tls12 }, { IocpDelivery.Callbacks, SslProtocols.Tls13 },
    };

    public static readonly TheoryData<SslProtocols> Versions = new() { SslProtocols.Tls12, SslProtocols.Tls13 };

    private static X509Certificate2 MakeIdentity()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            new OidCollection { new Oid("1.3.6.1.5.5.7.3.1") }, false));   // serverAuth
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
    }

    // The suite SslStream negotiated, as IocpTlsInfo gives it (netstandard2.0
    // has no TlsCipherSuite: its name there).
    private static void AssertSameCipherSuite(SslStream ssl, IocpTlsInfo info)
    {
#if IOCPSRV_NETSTANDARD
        Assert.Equal(ssl.NegotiatedCipherSuite.ToString(), info.CipherSuiteName);
#else
        Assert.Equal(ssl.NegotiatedCipherSuite, info.NegotiatedCipherSuite);
#endif
    }

    private static byte[] Pkcs12 => Identity.Value.Export(X509ContentType.Pkcs12, Password);

    private static IocpTlsOptions ServerTls() => new()
    {
        Pkcs12 = Pkcs12, Password = Password, AlpnProtocols = new[] { "h2", "http/1.1" },
        HandshakeTimeout = TimeSpan.FromSeconds(10),
    };

    // A TLS client that trusts exactly the test identity.
    private static async Task<SslStream> ConnectTlsAsync(int port, SslProtocols version, string? alpn = null)
    {
        Socket s = await Net.ConnectAsync(port);
        var ssl = new SslStream(new NetworkStream(s, ownsSocket: true));
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            EnabledSslProtocols = version,
            RemoteCertificateValidationCallback = (_, cert, _, _) =>
                cert != null && cert.GetCertHashString() == Identity.Value.Thumbprint,
        };
        if (alpn != null) options.ApplicationProtocols = new List<SslApplicationProtocol> { new(alpn) };
        await ssl.AuthenticateAsClientAsync(options, Net.Token());
        return ssl;
    }

    // Writes 64 KiB at a time and reads each one's echo before the next.
    private static async Task EchoLockStepAsync(SslStream ssl, byte[] data)
    {
        var got = new byte[data.Length];
        for (int at = 0; at < data.Length; at += 1 << 16)
        {
            int n = Math.Min(1 << 16, data.Length - at);
            await ssl.WriteAsync(data.AsMemory(at, n), Net.Token());
            await ssl.ReadExactlyAsync(got.AsMemory(at, n), Net.Token());
        }
        Assert.True(data.AsSpan().SequenceEqual(got), "the echo differs");
    }

    // close_notify from the client, then the server's close_notify and FIN.
    private static async Task CloseNotifyBothWaysAsync(SslStream ssl)
    {
        await ssl.ShutdownAsync();
        var one = new byte[1];
        Assert.Equal(0, await ssl.ReadAsync(one, Net.Token()));
    }

    [Theory, MemberData(nameof(ModesAndVersions))]
    public async Task EventStyleEchoesAMibAndHalfClosesWithCloseNotify(IocpDelivery mode, SslProtocols version)
    {
        var infos = new ConcurrentQueue<IocpTlsInfo>();
        var reasons = new ConcurrentQueue<IocpReason>();
        var options = new IocpServerOptions { Port = 0, Mode = mode, Tls = ServerTls() };
        options.OnConnect = (s, id, a, p) => { infos.Enqueue(s.GetTlsInfo(id)); return true; };
        options.OnData = (s, id, data) => s.Send(id, data);
        options.OnPeerClosed = (s, id) => s.Shutdown(id);   // close_notify, then FIN
        options.OnDisconnect = (s, id, r) => reasons.Enqueue(r);
        using var server = new IocpServer(options);
        using (SslStream ssl = await ConnectTlsAsync(server.Port, version, "http/1.1"))
        {
            await EchoLockStepAsync(ssl, Mib);
            IocpTlsInfo info = Assert.Single(infos);
            Assert.Equal(version, info.SslProtocol);
            Assert.Equal(ssl.SslProtocol, info.SslProtocol);
            AssertSameCipherSuite(ssl, info);
            Assert.Equal("http/1.1", info.ApplicationProtocol);
            Assert.Equal(SslApplicationProtocol.Http11, ssl.NegotiatedApplicationProtocol);
            await CloseNotifyBothWaysAsync(ssl);
        }
        await Net.WaitForAsync(() => reasons.Count == 1, "the connection ended");
        Assert.Equal(IocpReason.PeerClosed, Assert.Single(reasons));
        IocpStatistics st = server.Statistics;
        Assert.Equal(1UL, st.TlsHandshakes);
        Assert.Equal((ulong)Mib.Length, st.BytesReceived);
    }

    [Fact]
    public async Task AnX509Certificate2IsAnIdentity()
    {
        var options = new IocpServerOptions { Port = 0, Tls = IocpTlsOptions.FromCertificate(Identity.Value) };
        options.OnData = (s, id, data) => s.Send(id, data);
        using var server = new IocpServer(options);
        using SslStream ssl = await ConnectTlsAsync(server.Port, SslProtocols.Tls13);
        await EchoLockStepAsync(ssl, "x509"u8.ToArray());
        Assert.Equal(Identity.Value.Thumbprint, ssl.RemoteCertificate!.GetCertHashString());
    }

    [Theory, MemberData(nameof(EventStyleTests.Modes), MemberType = typeof(EventStyleTests))]
    public void AWrongPasswordOrAMissingKeyIsRefusedAtCreation(IocpDelivery mode)
    {
        var e = Assert.Throws<IocpException>(() => new IocpServer(new IocpServerOptions
        {
            Port = 0, Mode = mode, Tls = IocpTlsOptions.FromPkcs12(Pkcs12, "wrong"),
        }));
        Assert.Equal(IocpError.EPassword, e.Error);
        using X509Certificate2 publicOnly = X509CertificateLoader.LoadCertificate(Identity.Value.Export(X509ContentType.Cert));
        e = Assert.Throws<IocpException>(() => new IocpServer(new IocpServerOptions
        {
            Port = 0, Mode = mode, Tls = IocpTlsOptions.FromPkcs12(publicOnly.Export(X509ContentType.Pkcs12, Password), Password),
        }));
        Assert.Equal(IocpError.ENoKey, e.Error);
        Assert.Throws<ArgumentException>(() => new IocpServer(new IocpServerOptions
        {
            Port = 0, Mode = mode, Tls = IocpTlsOptions.FromCertificate(publicOnly),
        }));
        Assert.Throws<ArgumentException>(() => new IocpServer(new IocpServerOptions
        {
            Port = 0, Mode = mode, Tls = new IocpTlsOptions { Pkcs12 = Pkcs12, Password = Password, MinimumTlsVersion = (SslProtocols)768 },   // TLS 1.1
        }));
    }

    [Fact]
    public async Task AStalledHandshakeEndsAtTheHandshakeTimeout()
    {
        int connected = 0;
        var tls = IocpTlsOptions.FromPkcs12(Pkcs12, Password);
        tls.HandshakeTimeout = TimeSpan.FromMilliseconds(200);
        var options = new IocpServerOptions { Port = 0, Tls = tls };
        options.OnConnect = (s, id, a, p) => { Interlocked.Increment(ref connected); return true; };
        using var server = new IocpServer(options);
        using Socket raw = await Net.ConnectAsync(server.Port);   // and says nothing
        try { Assert.Equal(0, await Net.DrainToEndAsync(raw)); }
        catch (SocketException) { }                               // or a reset
        Assert.Equal(1UL, server.Statistics.TlsHandshakeTimeouts);
        Assert.Equal(0, Volatile.Read(ref connected));
    }

    [Fact]
    public async Task APlainConnectionHasNoTlsInfo()
    {
        var codes = new ConcurrentQueue<IocpError>();
        var options = new IocpServerOptions { Port = 0 };
        options.OnConnect = (s, id, a, p) =>
        {
            try { s.GetTlsInfo(id); }
            catch (IocpException e) { codes.Enqueue(e.Error); }
            return true;
        };
        using var server = new IocpServer(options);
        using Socket c = await Net.ConnectAsync(server.Port);
        await Net.WaitForAsync(() => !codes.IsEmpty, "OnConnect");
        Assert.Equal(IocpError.ENoTls, Assert.Single(codes));
    }

    // ---- IocpListener: the pipes carry plaintext ----

    [Theory, MemberData(nameof(Versions))]
    public async Task ListenerEchoesAMibThroughThePipes(SslProtocols version)
    {
        await using var listener = IocpListener.Listen(Net.Loopback0, new IocpListenerOptions { Tls = ServerTls() });
        Task<SslStream> connecting = ConnectTlsAsync(listener.LocalEndPoint.Port, version, "h2");
        IocpConnection? c = await listener.AcceptAsync(Net.Token());
        Assert.NotNull(c);
        Assert.Equal(version, c!.TlsInfo!.SslProtocol);
        Assert.Equal("h2", c.TlsInfo.ApplicationProtocol);
        Task echo = Task.Run(async () =>
        {
            await using (c)
            {
                await c.Input.CopyToAsync(c.Output, Net.Token());   // until the client's close_notify
                await c.Output.CompleteAsync();                      // close_notify, then FIN
                await c.Ended.WaitAsync(Net.Token());
            }
        });
        using (SslStream ssl = await connecting)
        {
            AssertSameCipherSuite(ssl, c.TlsInfo);
            await EchoLockStepAsync(ssl, Mib);
            await CloseNotifyBothWaysAsync(ssl);
        }
        await echo;
        Assert.Equal(IocpReason.PeerClosed, c.Reason);
    }

    [Fact]
    public void ListenerRefusesAWrongPasswordAsACryptographicException()
    {
        var e = Assert.Throws<CryptographicException>(() => IocpListener.Listen(Net.Loopback0,
            new IocpListenerOptions { Tls = IocpTlsOptions.FromPkcs12(Pkcs12, "wrong") }));
        Assert.Equal(IocpError.EPassword, Assert.IsType<IocpException>(e.InnerException).Error);
    }

    [Fact]
    public async Task ListenerConnectsOutboundWithTlsAndVerifies()
    {
        await using var target = IocpListener.Listen(Net.Loopback0, new IocpListenerOptions { Tls = ServerTls() });
        await using var client = IocpListener.Listen(Net.Loopback0);
        Task serve = Task.Run(async () =>
        {
            IocpConnection c = (await target.AcceptAsync(Net.Token()))!;
            await using (c)
            {
                await c.Input.CopyToAsync(c.Output, Net.Token());
                await c.Output.CompleteAsync();
                await c.Ended.WaitAsync(Net.Token());
            }
        });
        var trusted = new IocpTlsClientOptions
        {
            TargetHost = "localhost", TrustedCaPem = Identity.Value.ExportCertificatePem(),
            AlpnProtocols = new[] { "http/1.1" },
        };
        await using (IocpConnection c = await client.ConnectAsync(target.LocalEndPoint, trusted, Net.Token()))
        {
            Assert.Equal("http/1.1", c.TlsInfo!.ApplicationProtocol);
            await c.Output.WriteAsync("over tls"u8.ToArray(), Net.Token());
            await c.Output.CompleteAsync();
            System.IO.Pipelines.ReadResult r;
            while (!(r = await c.Input.ReadAsync(Net.Token())).IsCompleted) c.Input.AdvanceTo(r.Buffer.Start, r.Buffer.End);
            Assert.Equal("over tls", System.Text.Encoding.ASCII.GetString(System.Buffers.BuffersExtensions.ToArray(r.Buffer)));
        }
        await serve;
        // The same certificate is not for another name: verification fails.
        var wrongName = new IocpTlsClientOptions { TargetHost = "example.com", TrustedCaPem = trusted.TrustedCaPem };
        var e = await Assert.ThrowsAsync<AuthenticationException>(
            async () => await client.ConnectAsync(target.LocalEndPoint, wrongName, Net.Token()));
        Assert.Equal(IocpError.ECertVerify, Assert.IsType<IocpException>(e.InnerException).Error);
    }
}
