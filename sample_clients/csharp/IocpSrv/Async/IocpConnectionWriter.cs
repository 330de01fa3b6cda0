// IocpConnection.Output: a PipeWriter that hands its bytes to the library
// in FlushAsync, on the caller's thread (iocp_send copies them into the
// connection's queue), with no pipe and no send loop between: no thread
// hop and no task per flush. FlushAsync waits only while the library's
// queue is above OutputQueueLimit, until OnDrain reports it at the drain
// mark; it asks the library for the queue only when what it sent since the
// last answer could have taken the queue above the limit.
//
// With IocpListenerOptions.CoalesceFlushes a flush far below the limit
// only stages its bytes; they go to the library in one iocp_send when the
// application next reads Input (IocpConnectionReader), completes Output,
// flushes past the limit, or when a thread-pool item queued by the first
// staged flush runs, whichever comes first. A response written in two
// flushes (Kestrel: the body, then the final chunk) is then one send.
#nullable enable
using System;
using System.Buffers;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;

namespace IocpSrv
{
    internal sealed class IocpConnectionWriter : PipeWriter
#if NET8_0_OR_GREATER
        , IThreadPoolWorkItem
#endif
    {
        private static readonly FlushResult Done = new FlushResult(false, true);
        private readonly IocpServer server;
        private readonly ulong id;
        private readonly long queueLimit;
        // The bytes written since the last flush, in a pooled buffer taken
        // by the first GetMemory/GetSpan and given back by the flush.
        private byte[]? buffer;
        private int written;
        private bool completed;
        private volatile bool ended;
        private bool cancelNext;
        // An upper bound of the library's queue for this connection: its
        // last reading (iocp_queued) plus what was sent since. While it is
        // within the limit a flush need not ask the library.
        private long queueBound;
        // The slow path: a flush waiting for OnDrain (or the end).
        private TaskCompletionSource<FlushResult>? waiting;
        // Flushed bytes not yet handed to the library (pooled), under
        // sendLock: the reader's ReadAsync and the thread-pool item send
        // them from other threads than the writer's.
        private readonly bool coalesce;
        private readonly object sendLock = new object();
        private byte[]? staged;
        private int stagedLength;
        private bool itemQueued;
        private int deferredError;

        internal IocpConnectionWriter(IocpServer server, ulong id, long queueLimit, bool coalesce)
        {
            this.server = server;
            this.id = id;
            this.queueLimit = queueLimit;
            this.coalesce = coalesce;
        }

        public override void Advance(int bytes)
        {
            if (bytes < 0 || (buffer == null ? bytes != 0 : written + bytes > buffer.Length))
                throw new ArgumentOutOfRangeException(nameof(bytes));
            written += bytes;
        }

        public override Memory<byte> GetMemory(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return buffer.AsMemory(written);
        }

        public override Span<byte> GetSpan(int sizeHint = 0)
        {
            Reserve(sizeHint);
            return buffer.AsSpan(written);
        }

        private void Reserve(int sizeHint)
        {
            if (completed) throw new InvalidOperationException("Output was completed.");
            int need = Math.Max(sizeHint, 1);
            if (buffer == null)
            {
                buffer = ArrayPool<byte>.Shared.Rent(Math.Max(need, 4096));
            }
            else if (buffer.Length - written < need)
            {
                byte[] bigger = ArrayPool<byte>.Shared.Rent(checked(written + need));
                buffer.AsSpan(0, written).CopyTo(bigger);
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = bigger;
            }
        }

        public override void CancelPendingFlush()
        {
            TaskCompletionSource<FlushResult>? w = Volatile.Read(ref waiting);
            if (w == null || !w.TrySetResult(new FlushResult(true, false))) cancelNext = true;
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            if (cancelNext)
            {
                cancelNext = false;
                return new ValueTask<FlushResult>(new FlushResult(true, false));
            }
            if (coalesce && Stage(true)) return new ValueTask<FlushResult>(ended ? Done : default(FlushResult));
            if (!SendWritten()) return new ValueTask<FlushResult>(Done);
            if (queueBound <= queueLimit) return new ValueTask<FlushResult>(default(FlushResult));
            if (ended || server.TryQueued(id, out ulong queued) < 0) return new ValueTask<FlushResult>(Done);
            queueBound = (long)queued;
            if (queued <= (ulong)queueLimit) return new ValueTask<FlushResult>(default(FlushResult));
            return WaitForRoomAsync(cancellationToken);
        }

        // Moves what was written to the staged bytes; true when they may wait
        // (mayWait, and far below the limit), with the thread-pool item queued.
        private bool Stage(bool mayWait)
        {
            int error = deferredError;
            if (error != 0)
            {
                deferredError = 0;
                throw IocpErrorMap.ToException(error, "iocp_send");
            }
            if (ended) return false;
            lock (sendLock)
            {
                if (written > 0)
                {
                    if (staged == null)
                    {
                        staged = buffer;
                        stagedLength = written;
                        buffer = null;
                    }
                    else
                    {
                        if (staged.Length - stagedLength < written)
                        {
                            byte[] bigger = ArrayPool<byte>.Shared.Rent(checked(stagedLength + written));
                            staged.AsSpan(0, stagedLength).CopyTo(bigger);
                            ArrayPool<byte>.Shared.Return(staged);
                            staged = bigger;
                        }
                        buffer.AsSpan(0, written).CopyTo(staged.AsSpan(stagedLength));
                        stagedLength += written;
                        ArrayPool<byte>.Shared.Return(buffer!);
                        buffer = null;
                    }
                    written = 0;
                }
                if (!mayWait || staged == null || queueBound + stagedLength > queueLimit) return false;
                if (!itemQueued)
                {
                    itemQueued = true;
#if NET8_0_OR_GREATER
                    ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: true);
#else
                    ThreadPool.UnsafeQueueUserWorkItem(static s => ((IocpConnectionWriter)s!).SendStagedItem(), this);
#endif
                }
                return true;
            }
        }

        // The thread-pool item: sends what is still staged.
#if NET8_0_OR_GREATER
        void IThreadPoolWorkItem.Execute() => SendStagedItem();
#endif

        private void SendStagedItem()
        {
            lock (sendLock) itemQueued = false;
            SendStaged();
        }

        // Hands the staged bytes to the library (from any thread). An error
        // other than the connection's end is thrown by the next flush.
        internal void SendStaged()
        {
            if (staged == null) return;   // a racy peek: the writer's thread staged nothing
            lock (sendLock)
            {
                if (staged == null) return;
                int rc = ended ? IocpErrors.ENotFound : server.TrySend(id, staged.AsSpan(0, stagedLength));
                queueBound += stagedLength;
                ArrayPool<byte>.Shared.Return(staged);
                staged = null;
                stagedLength = 0;
                if (rc < 0 && rc != IocpErrors.ENotFound && rc != IocpErrors.EShutdown) deferredError = rc;
            }
        }

        // Queues what was written; false when the connection has ended.
        private bool SendWritten()
        {
            int rc = 0;
            if (coalesce)
            {
                Stage(false);
                SendStaged();
                if (deferredError != 0)
                {
                    rc = deferredError;
                    deferredError = 0;
                    throw IocpErrorMap.ToException(rc, "iocp_send");
                }
            }
            if (written > 0)
            {
                rc = ended ? IocpErrors.ENotFound : server.TrySend(id, buffer.AsSpan(0, written));
                queueBound += written;
                written = 0;
            }
            if (buffer != null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                buffer = null;
            }
            if (rc == IocpErrors.ENotFound || rc == IocpErrors.EShutdown) return false;   // ended or half-closed
            if (rc < 0) throw IocpErrorMap.ToException(rc, "iocp_send");
            return !ended;
        }

        private async ValueTask<FlushResult> WaitForRoomAsync(CancellationToken cancellationToken)
        {
            for (;;)
            {
                var tcs = new TaskCompletionSource<FlushResult>(TaskCreationOptions.RunContinuationsAsynchronously);
                Volatile.Write(ref waiting, tcs);
                // Checked again after the waiter is in place: a drain that
                // came in between would otherwise be missed.
                if (ended || server.TryQueued(id, out ulong queued) < 0) return Done;
                queueBound = (long)queued;
                if (queued <= (ulong)queueLimit) return default;
                FlushResult r;
                using (cancellationToken.Register(static s => ((TaskCompletionSource<FlushResult>)s!).TrySetCanceled(), tcs))
                {
                    r = await tcs.Task.ConfigureAwait(false);
                }
                if (r.IsCanceled || r.IsCompleted) return r;
            }
        }

        public override void Complete(Exception? exception = null)
        {
            if (completed) return;
            bool open;
            try { open = SendWritten(); }
            catch (Exception) { open = false; }   // reported by no one: the connection is failing anyway
            completed = true;
            // The graceful half-close: FIN once the queued bytes are out.
            if (open && exception == null) server.TryShutdown(id);
        }

        // ---- from the listener's drain thread ----

        internal void OnDrain() => Volatile.Read(ref waiting)?.TrySetResult(default);

        internal void OnEnded()
        {
            ended = true;
            Volatile.Read(ref waiting)?.TrySetResult(Done);
        }
    }
}
