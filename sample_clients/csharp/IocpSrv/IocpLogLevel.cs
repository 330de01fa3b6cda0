// The severity of an OnLog message.

namespace IocpSrv
{
    /// <summary>Levels of OnLog messages (enum iocp_log_level); lower is more severe.</summary>
    public enum IocpLogLevel
    {
        Error = 1,
        Warn = 2,
        Info = 3,
    }
}
