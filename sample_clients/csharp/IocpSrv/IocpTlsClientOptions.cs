// Options of an outbound TLS connection (IocpServer.Connect with TLS,
// IocpListener.ConnectAsync with TLS): the library is the TLS client.
using System;
using System.Security.Authentication;

namespace IocpSrv
{
    /// <summary>
    /// How an outbound connection speaks TLS. The server's certificate is
    /// verified against the system's trust store, or against
    /// <see cref="TrustedCaPem"/>, and its name against
    /// <see cref="TargetHost"/>; a failed handshake ends the attempt with
    /// OnConnectFailed(ECertVerify) (not trusted, or not for TargetHost),
    /// OnConnectFailed(ETimedOut) (it took longer than HandshakeTimeout) or
    /// OnConnectFailed(ETls).
    /// </summary>
    public sealed class IocpTlsClientOptions
    {
        /// <summary>The server's name: sent as SNI and checked against its certificate (an IP address is checked as one); null: neither.</summary>
        public string TargetHost { get; set; }

        /// <summary>Trust anchors as PEM text (one or more certificates); null: the system's.</summary>
        public string TrustedCaPem { get; set; }

        /// <summary>Accept any certificate (tests only).</summary>
        public bool SkipCertificateVerification { get; set; }

        /// <summary>ALPN protocols offered, most preferred first; null: none.</summary>
        public string[] AlpnProtocols { get; set; }

        /// <summary>SslProtocols.None or Tls12: TLS 1.2 or newer; Tls13: 1.3 only.</summary>
        public SslProtocols MinimumTlsVersion { get; set; }

        /// <summary>How long the handshake may take; zero: 10 seconds.</summary>
        public TimeSpan HandshakeTimeout { get; set; }

        // The struct iocp_tls_client; `memory` gets what it points to (free
        // with IocpTlsOptions.Free once the call returned).
        internal NativeMethods.TlsClient ToNative(out IntPtr[] memory)
        {
            var tc = new NativeMethods.TlsClient();
            tc.Size = (uint)System.Runtime.InteropServices.Marshal.SizeOf(typeof(NativeMethods.TlsClient));
            tc.NoVerify = SkipCertificateVerification ? 1u : 0u;
            tc.MinVersion = IocpTlsOptions.VersionOf(MinimumTlsVersion, "MinimumTlsVersion");
            tc.HandshakeTimeoutMs = IocpTlsOptions.TimeoutOf(HandshakeTimeout, "HandshakeTimeout");
            string alpn = IocpTlsOptions.AlpnOf(AlpnProtocols);
            byte[] ca = TrustedCaPem == null ? null : System.Text.Encoding.ASCII.GetBytes(TrustedCaPem);
            memory = new IntPtr[] { IocpTlsOptions.Utf8(TargetHost), IocpTlsOptions.Utf8(alpn),
                                    ca == null || ca.Length == 0 ? IntPtr.Zero : IocpTlsOptions.Copy(ca) };
            tc.ServerName = memory[0];
            tc.Alpn = memory[1];
            tc.CaPem = memory[2];
            tc.CaPemLen = memory[2] == IntPtr.Zero ? 0u : (uint)ca.Length;
            return tc;
        }
    }
}
