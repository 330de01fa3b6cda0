// What UseIocpSrv configures: the listener settings every endpoint gets.
using IocpSrv;

namespace IocpSrv.Kestrel
{
    /// <summary>The settings of the iocpsrv transport (one listener per Kestrel endpoint).</summary>
    public sealed class IocpTransportOptions
    {
        /// <summary>What each listener is created with.</summary>
        /// <remarks>CoalesceFlushes is on: a response Kestrel flushes in parts leaves in one send.</remarks>
        public IocpListenerOptions Listener { get; } = new IocpListenerOptions { CoalesceFlushes = true };
    }
}
