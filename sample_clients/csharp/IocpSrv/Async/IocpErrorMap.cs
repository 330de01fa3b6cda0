// The library's codes as the exceptions .NET code expects: SocketException
// with its SocketError where one fits; for TLS, AuthenticationException (a
// failed handshake, as SslStream throws) and CryptographicException (an
// identity that cannot be read, as X509Certificate2 throws), each around the
// IocpException; IocpException otherwise.
#nullable enable
using System;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;

namespace IocpSrv
{
    internal static class IocpErrorMap
    {
        private static SocketError? SocketErrorOf(int code) => (IocpError)code switch
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

        internal static Exception ToException(int code, string what)
        {
            SocketError? e = SocketErrorOf(code);
            return e.HasValue ? new SocketException((int)e.Value) : Wrap(new IocpException(code, what));
        }

        internal static Exception ToException(IocpException e)
        {
            SocketError? s = SocketErrorOf(e.Code);
            return s.HasValue ? new SocketException((int)s.Value) : Wrap(e);
        }

        private static Exception Wrap(IocpException e) => e.Error switch
        {
            IocpError.ETls or IocpError.ECertVerify => new AuthenticationException(e.Message, e),
            IocpError.EPkcs12 or IocpError.EPassword or IocpError.ENoKey => new CryptographicException(e.Message, e),
            _ => e,
        };
    }
}
