// Why a connection ended: what OnDisconnect receives.

namespace IocpSrv
{
    /// <summary>Why a connection ended (enum iocp_reason).</summary>
    public enum IocpReason
    {
        PeerClosed = 1,
        Reset = 2,
        LocalClose = 3,
        Destroy = 4,
        /// <summary>No traffic for its idle timeout (1.1).</summary>
        IdleTimeout = 5,
        /// <summary>StopGracefully reached its deadline (1.1).</summary>
        StopDeadline = 6,
        /// <summary>TLS: the peer's FIN came without close_notify (1.2).</summary>
        TlsTruncated = 7,
        /// <summary>TLS: a record failed after the handshake (1.2).</summary>
        TlsError = 8,
    }
}
