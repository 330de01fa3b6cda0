// What UseIocpSrv configures: the listener settings every endpoint gets.
using IocpSrv;

namespace IocpSrv.Kestrel
{
    /// <summary>The settings of the iocpsrv transport (one listener per Kestrel endpoint).</summary>
    public sealed class IocpTransportOptions
    {
        /// <summary>What each listener is created with.</summary>
        public IocpListenerOptions Listener { get; } = new IocpListenerOptions();
    }
}
