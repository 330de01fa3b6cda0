// A snapshot of a server's counters.

namespace IocpSrv
{
    /// <summary>A server's counters (iocp_statistics), read by IocpServer.Statistics.</summary>
    public sealed class IocpStatistics
    {
        public ulong ConnectionsAccepted { get; private set; }
        public ulong ConnectionsRefused { get; private set; }
        public ulong ConnectionsOpen { get; private set; }
        public ulong BytesReceived { get; private set; }
        public ulong BytesSent { get; private set; }
        public ulong BytesQueued { get; private set; }
        public ulong AcceptErrors { get; private set; }
        public ulong SystemErrors { get; private set; }
        /// <summary>TLS handshakes completed, both directions (1.2).</summary>
        public ulong TlsHandshakes { get; private set; }
        /// <summary>TLS handshakes failed (not TLS, bad version, alert, peer gone, verification).</summary>
        public ulong TlsHandshakeFailures { get; private set; }
        /// <summary>TLS handshakes not finished in time.</summary>
        public ulong TlsHandshakeTimeouts { get; private set; }

        internal IocpStatistics(NativeMethods.Statistics st)
        {
            ConnectionsAccepted = st.ConnectionsAccepted;
            ConnectionsRefused = st.ConnectionsRefused;
            ConnectionsOpen = st.ConnectionsOpen;
            BytesReceived = st.BytesReceived;
            BytesSent = st.BytesSent;
            BytesQueued = st.BytesQueued;
            AcceptErrors = st.AcceptErrors;
            SystemErrors = st.SystemErrors;
            TlsHandshakes = st.TlsHandshakes;
            TlsHandshakeFailures = st.TlsHandshakeFailures;
            TlsHandshakeTimeouts = st.TlsHandshakeTimeouts;
        }
    }
}
