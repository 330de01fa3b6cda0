// The Task-based face of the library: a listener whose connections are
// System.IO.Pipelines pipes, over an IocpServer in queue mode (one drain
// thread turns the library's batches into pipe writes and completions).
//
//   await using var listener = IocpListener.Listen(new IPEndPoint(IPAddress.Loopback, 0));
//   await foreach (IocpConnection c in listener.AcceptAllAsync(token))
//       _ = EchoAsync(c);   // c.Input.CopyToAsync(c.Output) ...
#nullable enable
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;

namespace IocpSrv
{
    /// <summary>
    /// A listening TCP endpoint served by the library: accept connections
    /// with <see cref="AcceptAsync"/> or <see cref="AcceptAllAsync"/>, open
    /// outbound ones with <see cref="ConnectAsync(IPEndPoint, CancellationToken)"/>, stop with
    /// <see cref="StopAsync"/> or <c>await using</c>.
    /// </summary>
    public sealed class IocpListener : IAsyncDisposable
    {
        private readonly IocpListenerOptions options;
        private readonly IocpServer server;
        private readonly Channel<IocpConnection> accepted =
            Channel.CreateUnbounded<IocpConnection>(new UnboundedChannelOptions { SingleWriter = true });
        private readonly ConcurrentDictionary<ulong, IocpConnection> connections =
            new ConcurrentDictionary<ulong, IocpConnection>();
        private readonly Dictionary<ulong, TaskCompletionSource<IocpConnection>> connecting =
            new Dictionary<ulong, TaskCompletionSource<IocpConnection>>();
        private readonly object gate = new object();
        private readonly IocpBlockPool blockPool = new IocpBlockPool();
        private volatile bool accepting = true;
        private volatile bool aborting;
        private Task? stopTask;
        private Task? disposeTask;

        private IocpListener(IPEndPoint endPoint, IocpListenerOptions options)
        {
            this.options = options;
            var o = new IocpServerOptions
            {
                Port = (ushort)endPoint.Port,
                Bind = endPoint.Address.ToString(),
                Threads = (uint)Math.Max(0, options.Threads),
                NoDelay = options.NoDelay,
                DualStack = options.DualStack,
                MaxConnections = (uint)Math.Max(0, options.MaxConnections),
                IdleTimeoutMs = (uint)Math.Min(IocpLibrary.MaxTimeoutMs, options.IdleTimeout.TotalMilliseconds),
                DrainMark = (ulong)options.OutputDrainMark,
                Mode = IocpDelivery.Queue,
                OnConnect = OnConnect,
                OnDataSegment = (s, id, data) => Find(id)?.OnData(data),
                OnPeerClosed = (s, id) => Find(id)?.OnPeerClosed(),
                OnDrain = (s, id, queued) => Find(id)?.OnDrain(),
                OnDisconnect = OnDisconnect,
                OnConnectFailed = OnConnectFailed,
                OnError = (s, where, e) => options.OnError?.Invoke(e),
                Tls = options.Tls,
            };
            try
            {
                server = new IocpServer(o);
            }
            catch (IocpException e)
            {
                throw IocpErrorMap.ToException(e);
            }
            LocalEndPoint = new IPEndPoint(endPoint.Address, server.Port);
        }

        /// <summary>
        /// Listens on <paramref name="endPoint"/> (port 0 picks a free one; see
        /// <see cref="LocalEndPoint"/>). Throws SocketException (AddressAlreadyInUse,
        /// AddressNotAvailable, AccessDenied, ...) or IocpException.
        /// </summary>
        public static IocpListener Listen(IPEndPoint endPoint, IocpListenerOptions? options = null)
        {
            if (endPoint == null) throw new ArgumentNullException(nameof(endPoint));
            return new IocpListener(endPoint, (options ?? new IocpListenerOptions()).Snapshot());
        }

        /// <summary>The address and port listened on.</summary>
        public IPEndPoint LocalEndPoint { get; }

        private IocpStatistics? lastStatistics;

        /// <summary>The counters since the listener started (their last values once disposed).</summary>
        public IocpStatistics Statistics => lastStatistics ?? server.Statistics;

        /// <summary>The event-style server underneath (counts, per-connection controls); disposed with the listener.</summary>
        public IocpServer Server => server;

        /// <summary>
        /// The next connection, or null once the listener stops accepting.
        /// Throws OperationCanceledException when the token fires.
        /// </summary>
        public async ValueTask<IocpConnection?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            ChannelReader<IocpConnection> reader = accepted.Reader;
            while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                if (reader.TryRead(out IocpConnection? c)) return c;
            }
            return null;
        }

        /// <summary>Every connection accepted, until the listener stops accepting or the token fires.</summary>
        public async IAsyncEnumerable<IocpConnection> AcceptAllAsync(
            [EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            for (;;)
            {
                IocpConnection? c = await AcceptAsync(cancellationToken).ConfigureAwait(false);
                if (c == null) yield break;
                yield return c;
            }
        }

        /// <summary>
        /// Opens an outbound connection through the same library (a numeric
        /// address: the library does no DNS). Throws SocketException
        /// (ConnectionRefused, TimedOut, HostUnreachable, ...) when it fails.
        /// </summary>
        public ValueTask<IocpConnection> ConnectAsync(IPEndPoint remote, CancellationToken cancellationToken = default)
            => ConnectAsync(remote, null, cancellationToken);

        /// <summary>
        /// As ConnectAsync, speaking TLS as a client when <paramref name="tls"/>
        /// is given: the connection comes once the handshake completed; a
        /// failed one throws AuthenticationException (its inner IocpException
        /// says ECertVerify: not trusted or not for TargetHost; or ETls), one
        /// that took too long SocketException(TimedOut).
        /// </summary>
        public async ValueTask<IocpConnection> ConnectAsync(IPEndPoint remote, IocpTlsClientOptions? tls,
                                                            CancellationToken cancellationToken = default)
        {
            if (remote == null) throw new ArgumentNullException(nameof(remote));
            var tcs = new TaskCompletionSource<IocpConnection>(TaskCreationOptions.RunContinuationsAsynchronously);
            ulong id;
            lock (connecting)
            {
                try { id = server.Connect(remote.Address.ToString(), (ushort)remote.Port, tls); }
                catch (IocpException e) { throw IocpErrorMap.ToException(e); }
                connecting[id] = tcs;
            }
            using (cancellationToken.Register(() =>
                   {
                       if (tcs.TrySetCanceled(cancellationToken)) server.TryClose(id);
                   }))
            {
                return await tcs.Task.ConfigureAwait(false);
            }
        }

        /// <summary>
        /// Stops: accepts nothing more, half-closes every connection once its
        /// queued bytes are out and waits for the peers to close; when the
        /// token fires, resets those still open. Idempotent: later calls wait
        /// for the same stop (and their token, too, turns it abortive).
        /// </summary>
        public async Task StopAsync(CancellationToken cancellationToken = default)
        {
            Task stop;
            lock (gate)
            {
                if (stopTask == null)
                {
                    StopAccepting();
                    stopTask = Task.Factory.StartNew(() =>
                    {
                        try { server.StopGracefully((uint)IocpLibrary.MaxTimeoutMs); }
                        catch (IocpException e) when (e.Code == IocpErrors.EStopped) { }
                    }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                }
                stop = stopTask;
            }
            using (cancellationToken.Register(AbortAll))
            {
                await stop.ConfigureAwait(false);
            }
        }

        /// <summary>Accepts nothing more (new peers are refused); open connections go on.</summary>
        public void StopAccepting()
        {
            accepting = false;
            accepted.Writer.TryComplete();
        }

        /// <summary>Stops abortively (StopAsync with a fired token) and releases the server.</summary>
        public ValueTask DisposeAsync()
        {
            lock (gate)
            {
                disposeTask ??= DisposeCoreAsync();
            }
            return new ValueTask(disposeTask);
        }

        private async Task DisposeCoreAsync()
        {
            await StopAsync(new CancellationToken(true)).ConfigureAwait(false);
            lastStatistics = server.Statistics;
            await Task.Run(server.Dispose).ConfigureAwait(false);
        }

        private void AbortAll()
        {
            aborting = true;
            foreach (ulong id in connections.Keys) server.TryClose(id);
            lock (connecting)
            {
                foreach (ulong id in connecting.Keys) server.TryClose(id);
            }
        }

        private IocpConnection? Find(ulong id) => connections.TryGetValue(id, out IocpConnection? c) ? c : null;

        // ---- on the drain thread ----

        private bool OnConnect(IocpServer s, ulong id, string address, ushort port)
        {
            TaskCompletionSource<IocpConnection>? outbound;
            lock (connecting)
            {
                outbound = TakeConnecting(id);
                if (outbound != null && outbound.Task.IsCompleted) return false;   // cancelled
            }
            if (aborting || (outbound == null && !accepting)) return false;
            var remote = new IPEndPoint(IPAddress.Parse(address), port);
            IocpTlsInfo? tls = null;
            if (options.Tls != null || outbound != null) server.TryGetTlsInfo(id, out tls);   // ENotls: plain
            var c = new IocpConnection(server, options, id, remote, LocalOf(id), tls, blockPool);
            connections[id] = c;
            if (outbound != null) outbound.TrySetResult(c);
            else if (!accepted.Writer.TryWrite(c))
            {
                connections.TryRemove(id, out _);
                c.OnEnded(IocpReason.LocalClose);   // refused: no other event comes
                return false;
            }
            return true;
        }

        // The connection's own local address (on a wildcard listener the
        // interface's; for an outbound one the port the system chose).
        private IPEndPoint? LocalOf(ulong id)
        {
            try
            {
                string address = server.LocalAddress(id, out ushort port);
                return new IPEndPoint(IPAddress.Parse(address), port);
            }
            catch (IocpException)
            {
                return null;   // closing already
            }
        }

        private void OnDisconnect(IocpServer s, ulong id, IocpReason reason)
        {
            if (connections.TryRemove(id, out IocpConnection? c)) c.OnEnded(reason);
        }

        private void OnConnectFailed(IocpServer s, ulong id, int error)
        {
            TaskCompletionSource<IocpConnection>? tcs;
            lock (connecting)
            {
                tcs = TakeConnecting(id);
            }
            tcs?.TrySetException(IocpErrorMap.ToException(error, "connect"));
        }

        // The pending ConnectAsync of id, taken out of `connecting` (under its lock).
        private TaskCompletionSource<IocpConnection>? TakeConnecting(ulong id)
        {
            if (!connecting.TryGetValue(id, out TaskCompletionSource<IocpConnection>? tcs)) return null;
            connecting.Remove(id);
            return tcs;
        }
    }
}
