// One connection of an IocpListener as System.IO.Pipelines: Input holds what
// the peer sent, Output what goes to it. The listener's drain thread feeds
// Input and reports the connection's events here; Output hands its bytes to
// the library's queue in FlushAsync (IocpConnectionWriter).
#nullable enable
using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;
using System.Net;
using System.Threading;
using System.Threading.Tasks;

namespace IocpSrv
{
    /// <summary>
    /// A TCP connection served by the library. Read <see cref="Input"/> and
    /// write <see cref="Output"/>; <see cref="Input"/> completes when the peer
    /// half-closes (FIN), <c>Output.Complete()</c> half-closes this side once
    /// the bytes written are out, <see cref="Abort"/> resets. A reader that
    /// stops reading pauses the peer once <see cref="IocpListenerOptions.InputPauseThreshold"/>
    /// bytes wait; <c>Output.FlushAsync</c> waits while the library's queue for
    /// this connection is above <see cref="IocpListenerOptions.OutputQueueLimit"/>,
    /// until it has drained to <see cref="IocpListenerOptions.OutputDrainMark"/>.
    /// Dispose it (await using) when done: that resets it if it is still open.
    /// </summary>
    public sealed class IocpConnection : IAsyncDisposable
    {
        private readonly IocpServer server;
        private readonly IocpListenerOptions options;
        private readonly Pipe input;
        private readonly IocpConnectionWriter output;
        private readonly PipeReader reader;
        private readonly CancellationTokenSource closed = new CancellationTokenSource();
#if NET8_0_OR_GREATER
        private readonly TaskCompletionSource ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
#else
        private readonly TaskCompletionSource<bool> ended = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
#endif
        private readonly object gate = new object();
        // Input: bytes that came while a flush into Input waited (the pipe
        // was full); written when it completes.
        private bool flushing;
        private List<byte[]>? pending;
        private bool finPending;
        private Exception? endError;
        private bool inputDone;
        private bool isEnded;

        internal IocpConnection(IocpServer server, IocpListenerOptions options, ulong id,
                                IPEndPoint remote, IPEndPoint? local, IocpTlsInfo? tls, MemoryPool<byte> blockPool)
        {
            this.server = server;
            this.options = options;
            TlsInfo = tls;
            Id = id;
            RemoteEndPoint = remote;
            LocalEndPoint = local;
            input = new Pipe(new PipeOptions(pool: blockPool, pauseWriterThreshold: options.InputPauseThreshold,
                resumeWriterThreshold: options.InputResumeThreshold,
                readerScheduler: options.UnsafePreferInlineScheduling ? PipeScheduler.Inline : PipeScheduler.ThreadPool,
                useSynchronizationContext: false));
            output = new IocpConnectionWriter(server, id, options.OutputQueueLimit, options.CoalesceFlushes);
            reader = options.CoalesceFlushes ? new IocpConnectionReader(input.Reader, output) : input.Reader;
        }

        /// <summary>The library's id of this connection.</summary>
        public ulong Id { get; }

        /// <summary>The peer's address and port.</summary>
        public IPEndPoint RemoteEndPoint { get; }

        /// <summary>
        /// What the TLS handshake settled (protocol, cipher suite, ALPN), or
        /// null for a plain TCP connection.
        /// </summary>
        public IocpTlsInfo? TlsInfo { get; }

        /// <summary>The local address and port as the system reports them (for an outbound connection the port it chose); null only when the connection was already closing when it came.</summary>
        public IPEndPoint? LocalEndPoint { get; }

        /// <summary>What the peer sent; completes on its FIN (with an IOException when it reset).</summary>
        public PipeReader Input => reader;

        /// <summary>What goes to the peer; Complete() half-closes after the bytes written.</summary>
        public PipeWriter Output => output;

        /// <summary>Fires when the connection has ended, for whatever reason.</summary>
        public CancellationToken ConnectionClosed => closed.Token;

        /// <summary>Why the connection ended, once it has.</summary>
        public IocpReason? Reason { get; private set; }

        /// <summary>Completes when the connection has ended.</summary>
        public Task Ended => ended.Task;

        /// <summary>Resets the connection (RST; bytes still queued are dropped).</summary>
        public void Abort()
        {
            server.TryClose(Id);
        }

        /// <summary>
        /// Closes gracefully: completes Output (its bytes go out, then FIN)
        /// and Input, and returns once the bytes are queued. The library keeps
        /// the connection until the peer closes too; one still open after
        /// <see cref="IocpListenerOptions.CloseTimeout"/> is reset.
        /// </summary>
        public ValueTask DisposeAsync()
        {
            output.Complete();
            input.Reader.Complete();
            if (isEnded) return default;
            if (options.CloseTimeout <= TimeSpan.Zero)
            {
                Abort();
                return default;
            }
            _ = Task.Delay(options.CloseTimeout).ContinueWith(_ => { if (!isEnded) Abort(); },
                                                               TaskScheduler.Default);
            return default;
        }

        // ---- Input: called on the listener's drain thread ----

        internal void OnData(ReadOnlySpan<byte> data)
        {
            lock (gate)
            {
                if (inputDone) return;
                if (flushing)
                {
                    (pending ??= new List<byte[]>()).Add(data.ToArray());
                    return;
                }
                input.Writer.Write(data);
                ValueTask<FlushResult> f = input.Writer.FlushAsync();
                if (f.IsCompletedSuccessfully)
                {
                    if (f.Result.IsCompleted) ReaderGone();
                    return;
                }
                // Input is full: the library stops receiving until it drained.
                flushing = true;
                server.TryPause(Id);
                _ = AwaitFlushAsync(f);
            }
        }

        private async Task AwaitFlushAsync(ValueTask<FlushResult> f)
        {
            for (;;)
            {
                FlushResult r;
                try { r = await f.ConfigureAwait(false); }
                catch (Exception) { r = new FlushResult(false, true); }
                lock (gate)
                {
                    if (r.IsCompleted)
                    {
                        flushing = false;
                        ReaderGone();
                        return;
                    }
                    if (pending != null && pending.Count > 0)
                    {
                        foreach (byte[] p in pending) input.Writer.Write(p);
                        pending.Clear();
                        f = input.Writer.FlushAsync();
                        if (!f.IsCompletedSuccessfully) continue;   // still full: stay paused
                        if (f.Result.IsCompleted) { flushing = false; ReaderGone(); return; }
                    }
                    flushing = false;
                    if (finPending) CompleteInput();
                    else if (!isEnded) server.TryResume(Id);
                    return;
                }
            }
        }

        // The application completed Input: what still comes is dropped.
        private void ReaderGone()
        {
            inputDone = true;
            pending = null;
            input.Writer.Complete();
        }

        private void CompleteInput()
        {
            if (inputDone) return;
            inputDone = true;
            input.Writer.Complete(endError);
        }

        internal void OnPeerClosed()
        {
            lock (gate)
            {
                if (flushing) finPending = true;
                else CompleteInput();
            }
        }

        internal void OnDrain()
        {
            output.OnDrain();
        }

        internal void OnEnded(IocpReason reason)
        {
            Reason = reason;
            lock (gate)
            {
                isEnded = true;
                if (reason != IocpReason.PeerClosed && endError == null)
                    endError = new IOException("the connection ended: " + reason);
                // Bytes still waiting for room in Input are delivered first,
                // unless the connection was reset.
                if (flushing && reason == IocpReason.PeerClosed) finPending = true;
                else CompleteInput();
            }
            output.OnEnded();
#if NET8_0_OR_GREATER
            ended.TrySetResult();
#else
            ended.TrySetResult(true);
#endif
            try { closed.Cancel(); } catch (AggregateException) { }
        }
    }
}
