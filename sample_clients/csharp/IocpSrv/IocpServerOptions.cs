// What a server is created with: its configuration (0 / null keeps the
// library's default) and its handlers.

namespace IocpSrv
{
    /// <summary>Configuration and callbacks; 0 / null keeps the library default.</summary>
    public class IocpServerOptions
    {
        public ushort Port = 50000;           // 0 picks a free port
        public string Bind = "127.0.0.1";
        public uint Threads;                  // 0 = one per processor (queue mode: one fewer, at least 1)
        public uint Backlog;
        public uint AcceptsPosted;
        public uint RecvBufferSize;
        public ulong MaxSendQueue;
        public bool NoDelay = true;           // TCP_NODELAY on accepted connections
        public IocpDelivery Mode = IocpDelivery.Queue;
        public int Batch = 256;               // queue mode: events per iocp_wait
        /// <summary>With an IPv6 Bind such as "::", take IPv4 connections too (IPV6_V6ONLY off).</summary>
        public bool DualStack;
        // 1.1 controls, all off by default (see api/iocpsrv.h).
        /// <summary>End a connection silent this long (IocpReason.IdleTimeout); 0 = never.</summary>
        public uint IdleTimeoutMs;
        /// <summary>Refuse connections past this many (counted in RefusedCount); 0 = no limit.</summary>
        public uint MaxConnections;
        /// <summary>TCP keep-alive; the times in ms, 0 = the system's value.</summary>
        public bool KeepAlive;
        public uint KeepAliveIdleMs;
        public uint KeepAliveIntervalMs;
        /// <summary>OnDrain fires when a queue falls to this many bytes (0 = empty).</summary>
        public ulong DrainMark;
        /// <summary>
        /// TLS on every connection (1.2), done by the library: OnConnect comes
        /// after the handshake, handlers see plaintext, Shutdown sends
        /// close_notify then FIN. Null: plain TCP.
        /// </summary>
        public IocpTlsOptions Tls;

        /// <summary>Return false (or throw) to refuse the connection.</summary>
        public ConnectHandler OnConnect;
        /// <summary>The array is a copy: keep it as long as you like.</summary>
        public DataHandler OnData;
        /// <summary>
        /// Queue mode, instead of OnData: the bytes without a copy of their
        /// own, in a buffer reused after the handler returns (copy what you
        /// keep). Send(id, segment) sends straight from it.
        /// </summary>
        public DataSegmentHandler OnDataSegment;
        /// <summary>
        /// Instead of OnData: a handler returning a Task, which the server
        /// awaits. Its exceptions go to OnError. While a connection's task
        /// runs, receiving from it pauses (so the next bytes come after it;
        /// PauseReceive/ResumeReceive are the server's then); its
        /// OnDisconnect may run before the task has finished.
        /// </summary>
        public DataAsyncHandler OnDataAsync;
        public SentHandler OnSent;
        /// <summary>When null the library sends what is queued, then closes.</summary>
        public PeerClosedHandler OnPeerClosed;
        public DisconnectHandler OnDisconnect;
        /// <summary>The queue fell to the drain mark: produce again (1.1).</summary>
        public DrainHandler OnDrain;
        /// <summary>A callback threw; default: print to standard error.</summary>
        public ErrorHandler OnError;
        /// <summary>
        /// An outbound connection from Connect could not be established: its
        /// only callback (error: IocpErrors.EConnRefused, ETimedOut, EUnreach, EClosed, ...).
        /// </summary>
        public ConnectFailedHandler OnConnectFailed;
        /// <summary>
        /// What the library worked around or could not do: failed accepts,
        /// running out of descriptors, a worker leaving. Queue mode: on the
        /// drainer like every handler (LOG events). Callback mode: may run on
        /// several threads at once, and on the constructing thread while the
        /// constructor runs (do not use the server there).
        /// </summary>
        public LogHandler OnLog;

        // The copy a server keeps: changing the options afterwards changes
        // nothing in a running server.
        internal IocpServerOptions Snapshot() { return (IocpServerOptions)MemberwiseClone(); }
    }
}
