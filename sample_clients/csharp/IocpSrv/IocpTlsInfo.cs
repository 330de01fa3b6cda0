// What a connection's TLS handshake settled (IocpServer.GetTlsInfo,
// IocpConnection.TlsInfo), named as SslStream names it.
using System;
using System.Runtime.InteropServices;
using System.Security.Authentication;

namespace IocpSrv
{
    /// <summary>The protocol, cipher suite and ALPN protocol a TLS connection negotiated.</summary>
    public sealed class IocpTlsInfo
    {
        /// <summary>SslProtocols.Tls12 or Tls13 (value 12288), as SslStream.SslProtocol.</summary>
        public SslProtocols SslProtocol { get; private set; }

        /// <summary>The cipher suite's IANA name, e.g. "TLS_AES_128_GCM_SHA256" (the names of .NET's TlsCipherSuite).</summary>
        public string CipherSuiteName { get; private set; }

        /// <summary>The protocol ALPN chose ("h2"), or null.</summary>
        public string ApplicationProtocol { get; private set; }

#if NET8_0_OR_GREATER
        /// <summary>The cipher suite as SslStream.NegotiatedCipherSuite gives it, when .NET knows its name.</summary>
        public System.Net.Security.TlsCipherSuite? NegotiatedCipherSuite
        {
            get
            {
                System.Net.Security.TlsCipherSuite s;
                return Enum.TryParse(CipherSuiteName, out s) ? s : null;
            }
        }
#endif

        public override string ToString()
        {
            return SslProtocol + " " + CipherSuiteName + (ApplicationProtocol == null ? "" : " " + ApplicationProtocol);
        }

        // iocp_tls_get_info: 0 and the info, or the library's error code.
        internal static int Read(ServerHandle handle, ulong id, out IocpTlsInfo info)
        {
            info = null;
            int size = Marshal.SizeOf(typeof(NativeMethods.TlsInfo));
            IntPtr p = Marshal.AllocHGlobal(size);
            try
            {
                Marshal.WriteInt32(p, size);
                int rc = NativeMethods.iocp_tls_get_info(handle, id, p);
                if (rc != 0) return rc;
                var raw = (NativeMethods.TlsInfo)Marshal.PtrToStructure(p, typeof(NativeMethods.TlsInfo));
                info = new IocpTlsInfo();
                info.SslProtocol = raw.Version == (uint)NativeMethods.IocpTlsVersion.Tls13 ? IocpTlsOptions.SslTls13
                    : raw.Version == (uint)NativeMethods.IocpTlsVersion.Tls12 ? SslProtocols.Tls12 : SslProtocols.None;
                info.CipherSuiteName = Text(raw.Cipher);
                string alpn = Text(raw.Alpn);
                info.ApplicationProtocol = alpn.Length == 0 ? null : alpn;
                return 0;
            }
            finally
            {
                Marshal.FreeHGlobal(p);
            }
        }

        private static string Text(byte[] b)
        {
            int n = Array.IndexOf(b, (byte)0);
            return System.Text.Encoding.ASCII.GetString(b, 0, n < 0 ? b.Length : n);
        }
    }
}
