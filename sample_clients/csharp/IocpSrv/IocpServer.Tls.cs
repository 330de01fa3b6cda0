// IocpServer's TLS calls: what a connection's handshake settled, and
// outbound connections that speak TLS. (The server side is
// IocpServerOptions.Tls.) Any thread, handlers included.
using System;

namespace IocpSrv
{
    public sealed partial class IocpServer
    {
        /// <summary>
        /// The protocol, cipher suite and ALPN protocol the connection's TLS
        /// handshake settled (from OnConnect on). Throws IocpException:
        /// ENotls (a plain TCP connection), ENotFound (unknown or ended).
        /// </summary>
        public IocpTlsInfo GetTlsInfo(ulong id)
        {
            IocpTlsInfo info;
            Check(IocpTlsInfo.Read(handle, id, out info), "iocp_tls_get_info");
            return info;
        }

        // GetTlsInfo without an exception: 0, or the library's code.
        internal int TryGetTlsInfo(ulong id, out IocpTlsInfo info)
        {
            return IocpTlsInfo.Read(handle, id, out info);
        }

        /// <summary>
        /// Connect, speaking TLS as a client once connected (iocp_connect_tls):
        /// OnConnect comes after the handshake; a failed one is
        /// OnConnectFailed(ECertverify, ETimedOut or ETls). Throws as Connect does, and
        /// IocpException(ETls) when the library refuses the options
        /// (OnLog says why), ArgumentException for a bad setting.
        /// </summary>
        public ulong Connect(string host, ushort port, IocpTlsClientOptions tls)
        {
            if (tls == null) return Connect(host, port);
            if (host == null) throw new ArgumentNullException("host");
            if (port == 0) throw new ArgumentOutOfRangeException("port");
            byte[] text = System.Text.Encoding.ASCII.GetBytes(host + "\0");
            IntPtr[] memory;
            NativeMethods.TlsClient native = tls.ToNative(out memory);
            try
            {
                ulong id;
                Check(NativeMethods.iocp_connect_tls(handle, text, port, ref native, out id),
                      "iocp_connect_tls " + host + " port " + port);
                return id;
            }
            finally
            {
                IocpTlsOptions.Free(memory);
            }
        }
    }
}
