// The library's codes as the exceptions .NET code expects: SocketException
// with its SocketError where one fits, IocpException otherwise.
#nullable enable
using System;
using System.Net.Sockets;

namespace IocpSrv
{
    internal static class IocpErrorMap
    {
        internal static Exception ToException(int code, string what)
        {
            SocketError? e = (IocpError)code switch
            {
                IocpError.EAddrInUse => SocketError.AddressAlreadyInUse,
                IocpError.EAddrNotAvail => SocketError.AddressNotAvailable,
                IocpError.EConnRefused => SocketError.ConnectionRefused,
                IocpError.ETimedOut => SocketError.TimedOut,
                IocpError.EUnreach => SocketError.HostUnreachable,
                IocpError.EAcces => SocketError.AccessDenied,
                IocpError.EAfNoSupport => SocketError.AddressFamilyNotSupported,
                IocpError.EMFile => SocketError.TooManyOpenSockets,
                _ => null,
            };
            return e.HasValue ? new SocketException((int)e.Value) : new IocpException(code, what);
        }

        internal static Exception ToException(IocpException e) => ToException(e.Code, e.Message);
    }
}
