// IocpServer.StopAsync (every target): the graceful stop as Kestrel's StopAsync
// behaves: idempotent, graceful until the token fires, then abortive.
#nullable enable
using System;
using System.Threading;
using System.Threading.Tasks;

namespace IocpSrv
{
    public sealed partial class IocpServer
    {
        private readonly object stopGate = new object();
        private Task? stopTask;

        /// <summary>
        /// Stops accepting and half-closes every connection once its queued
        /// bytes are out (StopGracefully), waiting for the peers to close;
        /// when the token fires, closes those still open abortively
        /// (IocpReason.Destroy). Every call returns the same stop: a second
        /// one waits for it (its token, too, turns it abortive) and never
        /// throws for having been called twice. Not from inside a handler of
        /// this server. Dispose afterwards.
        /// </summary>
        public async Task StopAsync(CancellationToken cancellationToken = default)
        {
            Task stop;
            lock (stopGate)
            {
                stopTask ??= Task.Factory.StartNew(() =>
                {
                    try { StopGracefully((uint)IocpLibrary.MaxTimeoutMs); }
                    catch (IocpException e) when (e.Code == IocpErrors.EStopped) { }
                }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                stop = stopTask;
            }
            using (cancellationToken.Register(() => { if (!handle.IsClosed) NativeMethods.iocp_stop(handle); }))
            {
                await stop.ConfigureAwait(false);
            }
        }

        /// <summary>StopGracefully with the deadline as a TimeSpan.</summary>
        public int StopGracefully(TimeSpan timeout)
        {
            return StopGracefully((uint)Math.Min(Math.Max(timeout.TotalMilliseconds, 0), IocpLibrary.MaxTimeoutMs));
        }
    }
}
