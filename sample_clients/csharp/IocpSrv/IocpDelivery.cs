// How events reach the handlers: IocpServerOptions.Mode.

namespace IocpSrv
{
    /// <summary>How events reach the handlers (enum iocp_delivery).</summary>
    public enum IocpDelivery
    {
        Callbacks = 0,
        Queue = 1,
    }
}
