// IocpConnection.Input when flushes are coalesced
// (IocpListenerOptions.CoalesceFlushes): the input pipe's reader, which
// first hands Output's staged bytes to the library whenever the
// application reads. A request-response protocol reads the next request
// once its response is written, so the response's flushes go out in one
// send, before the reader waits.
#nullable enable
using System;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;

namespace IocpSrv
{
    internal sealed class IocpConnectionReader : PipeReader
    {
        private readonly PipeReader inner;
        private readonly IocpConnectionWriter output;

        internal IocpConnectionReader(PipeReader inner, IocpConnectionWriter output)
        {
            this.inner = inner;
            this.output = output;
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            output.SendStaged();
            return inner.ReadAsync(cancellationToken);
        }

        public override bool TryRead(out ReadResult result)
        {
            output.SendStaged();
            return inner.TryRead(out result);
        }

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
            => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);
    }
}
