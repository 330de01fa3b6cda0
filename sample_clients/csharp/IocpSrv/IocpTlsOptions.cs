// A TLS server's identity and settings (IocpServerOptions.Tls,
// IocpListenerOptions.Tls): the library speaks TLS itself (OpenSSL 3 on
// Linux, SChannel on Windows), so handlers and pipes see plaintext.
using System;
using System.Runtime.InteropServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace IocpSrv
{
    /// <summary>
    /// The identity a TLS server presents and how it negotiates. Give either
    /// <see cref="Pkcs12"/> (a PKCS#12 file's bytes: certificate, private key,
    /// optionally the chain) with its <see cref="Password"/>, or a
    /// <see cref="Certificate"/> with its private key, which is exported to
    /// PKCS#12 under a password made for the purpose. Read when the server is
    /// created; a bad blob, a wrong password or a certificate without its key
    /// fails there (IocpException EPkcs12, EPassword, ENoKey; IocpListener:
    /// a CryptographicException around it).
    /// </summary>
    public sealed class IocpTlsOptions
    {
        /// <summary>A PKCS#12 blob (e.g. File.ReadAllBytes("server.p12")).</summary>
        public byte[] Pkcs12 { get; set; }

        /// <summary>The PKCS#12 blob's password; null: empty.</summary>
        public string Password { get; set; }

        /// <summary>Instead of Pkcs12: a certificate with its private key (exportable).</summary>
        public X509Certificate2 Certificate { get; set; }

        /// <summary>ALPN protocols accepted, most preferred first ("h2", "http/1.1"); null: no ALPN.</summary>
        public string[] AlpnProtocols { get; set; }

        /// <summary>
        /// The lowest protocol accepted: SslProtocols.None (the default) or
        /// Tls12 for TLS 1.2, Tls13 for TLS 1.3 only; TLS 1.0 and 1.1 are
        /// never accepted (ArgumentException).
        /// </summary>
        public SslProtocols MinimumTlsVersion { get; set; }

        /// <summary>How long a handshake may take; zero: 10 seconds.</summary>
        public TimeSpan HandshakeTimeout { get; set; }

        /// <summary>A server identity from a PKCS#12 blob and its password.</summary>
        public static IocpTlsOptions FromPkcs12(byte[] pkcs12, string password)
        {
            if (pkcs12 == null) throw new ArgumentNullException("pkcs12");
            var o = new IocpTlsOptions();
            o.Pkcs12 = pkcs12;
            o.Password = password;
            return o;
        }

        /// <summary>A server identity from a certificate with its private key.</summary>
        public static IocpTlsOptions FromCertificate(X509Certificate2 certificate)
        {
            if (certificate == null) throw new ArgumentNullException("certificate");
            var o = new IocpTlsOptions();
            o.Certificate = certificate;
            return o;
        }

        // SslProtocols.Tls13 (12288) is not in netstandard2.0's enum.
        internal const SslProtocols SslTls13 = (SslProtocols)12288;

        internal static uint VersionOf(SslProtocols p, string what)
        {
            if (p == SslProtocols.None) return 0;
            if (p == SslProtocols.Tls12) return (uint)NativeMethods.IocpTlsVersion.Tls12;
            if (p == SslTls13) return (uint)NativeMethods.IocpTlsVersion.Tls13;
            throw new ArgumentException(what + ": only SslProtocols.Tls12 or Tls13 (TLS 1.0 and 1.1 are never accepted)", what);
        }

        internal static uint TimeoutOf(TimeSpan t, string what)
        {
            if (t == TimeSpan.Zero) return 0;
            double ms = Math.Ceiling(t.TotalMilliseconds);
            if (ms <= 0 || ms > IocpLibrary.MaxTimeoutMs)
                throw new ArgumentOutOfRangeException(what, "a handshake timeout is above zero and at most 24 days");
            return (uint)ms;
        }

        // The ALPN list as the header's comma-separated text, or null.
        internal static string AlpnOf(string[] protocols)
        {
            if (protocols == null || protocols.Length == 0) return null;
            foreach (string p in protocols)
            {
                if (string.IsNullOrEmpty(p) || p.IndexOf(',') >= 0 || p.Length > 255)
                    throw new ArgumentException("an ALPN protocol is a name of 1 to 255 characters without commas", "AlpnProtocols");
            }
            return string.Join(",", protocols);
        }

        // UTF-8, NUL-terminated, in unmanaged memory (null: IntPtr.Zero).
        internal static IntPtr Utf8(string s)
        {
            if (s == null) return IntPtr.Zero;
            byte[] b = System.Text.Encoding.UTF8.GetBytes(s + "\0");
            IntPtr p = Marshal.AllocHGlobal(b.Length);
            Marshal.Copy(b, 0, p, b.Length);
            return p;
        }

        internal static IntPtr Copy(byte[] b)
        {
            IntPtr p = Marshal.AllocHGlobal(b.Length);
            Marshal.Copy(b, 0, p, b.Length);
            return p;
        }

        // Fills config's tls_ fields; returns the memory they point to, for
        // the caller to free (Free) once iocp_create has returned.
        internal IntPtr[] Fill(ref NativeMethods.Config config)
        {
            byte[] blob = Pkcs12;
            string password = Password;
            if (Certificate != null)
            {
                if (blob != null) throw new ArgumentException("give Pkcs12 or Certificate, not both", "Tls");
                if (!Certificate.HasPrivateKey)
                    throw new ArgumentException("the certificate has no private key", "Tls");
                password = Guid.NewGuid().ToString("N");
                blob = Certificate.Export(X509ContentType.Pkcs12, password);
            }
            if (blob == null || blob.Length == 0) throw new ArgumentException("Tls needs Pkcs12 or Certificate", "Tls");
            uint version = VersionOf(MinimumTlsVersion, "MinimumTlsVersion");
            uint timeout = TimeoutOf(HandshakeTimeout, "HandshakeTimeout");
            string alpn = AlpnOf(AlpnProtocols);
            var memory = new IntPtr[] { Copy(blob), Utf8(password), Utf8(alpn) };
            config.TlsPkcs12 = memory[0];
            config.TlsPkcs12Len = (uint)blob.Length;
            config.TlsPassword = memory[1];
            config.TlsAlpn = memory[2];
            config.TlsMinVersion = version;
            config.TlsHandshakeTimeoutMs = timeout;
            return memory;
        }

        internal static void Free(IntPtr[] memory)
        {
            if (memory == null) return;
            foreach (IntPtr p in memory)
            {
                if (p != IntPtr.Zero) Marshal.FreeHGlobal(p);
            }
        }
    }
}
