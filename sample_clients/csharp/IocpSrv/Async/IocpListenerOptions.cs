// What an IocpListener is created with; read once, when it is created.
#nullable enable
using System;

namespace IocpSrv
{
    /// <summary>
    /// Settings of an <see cref="IocpListener"/>. Read once when the listener
    /// is created: changing them afterwards changes nothing.
    /// </summary>
    public sealed class IocpListenerOptions
    {
        /// <summary>Worker threads; 0 picks the library's default.</summary>
        public int Threads { get; set; }

        /// <summary>Accept IPv4 peers on an IPv6 wildcard address too.</summary>
        public bool DualStack { get; set; }

        /// <summary>TCP_NODELAY on each connection (the default).</summary>
        public bool NoDelay { get; set; } = true;

        /// <summary>Connections open at once at most; 0: no cap.</summary>
        public int MaxConnections { get; set; }

        /// <summary>A connection with no traffic this long is reset; zero: never.</summary>
        public TimeSpan IdleTimeout { get; set; }

        /// <summary>
        /// Unread bytes in a connection's <see cref="IocpConnection.Input"/>
        /// at which the library stops receiving from that peer (its bytes
        /// then wait in the kernel, and TCP slows the sender down).
        /// </summary>
        public long InputPauseThreshold { get; set; } = 1 << 20;

        /// <summary>Unread bytes at which receiving resumes.</summary>
        public long InputResumeThreshold { get; set; } = 512 << 10;

        /// <summary>
        /// Bytes queued in the library for one connection above which
        /// <see cref="IocpConnection.Output"/> stops taking more: its
        /// FlushAsync waits until the queue has drained to
        /// <see cref="OutputDrainMark"/>.
        /// </summary>
        public long OutputQueueLimit { get; set; } = 1 << 20;

        /// <summary>Queued bytes at which a waiting output goes on.</summary>
        public long OutputDrainMark { get; set; } = 256 << 10;

        /// <summary>
        /// How long a disposed connection waits for its peer to close after
        /// this side's FIN before it is reset; zero: reset at once.
        /// </summary>
        public TimeSpan CloseTimeout { get; set; } = TimeSpan.FromSeconds(5);

        /// <summary>
        /// TLS on every accepted connection, done by the library (a PKCS#12
        /// blob and password, or an X509Certificate2; ALPN, minimum version,
        /// handshake timeout): connections are accepted once their handshake
        /// completed, the pipes carry plaintext, Output.Complete() sends
        /// close_notify then FIN. Null: plain TCP.
        /// </summary>
        public IocpTlsOptions? Tls { get; set; }

        /// <summary>
        /// Runs the code awaiting <see cref="IocpConnection.Input"/> on the
        /// listener's drain thread, inline, instead of on the thread pool: an
        /// echo then costs no thread switch, but code that blocks or works long
        /// there holds up every connection's input (Kestrel's
        /// UnsafePreferInlineScheduling). Off by default.
        /// </summary>
        public bool UnsafePreferInlineScheduling { get; set; }

        /// <summary>
        /// Lets a flush of <see cref="IocpConnection.Output"/> far below
        /// <see cref="OutputQueueLimit"/> wait for more: its bytes go to the
        /// library when the application next reads <see cref="IocpConnection.Input"/>,
        /// completes Output, or at the latest when a thread-pool item queued
        /// by that flush runs. A response written in several flushes
        /// (Kestrel's body, then its final chunk) then leaves in one send
        /// call. Off by default: an echo, one flush per read, gains nothing
        /// and pays the thread-pool item; the Kestrel transport turns it on.
        /// </summary>
        public bool CoalesceFlushes { get; set; }

        /// <summary>Exceptions nobody else can receive (a failing drain loop); ignored when null.</summary>
        public Action<Exception>? OnError { get; set; }

        internal IocpListenerOptions Snapshot() => (IocpListenerOptions)MemberwiseClone();
    }
}
