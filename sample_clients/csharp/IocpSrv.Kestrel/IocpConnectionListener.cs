// One Kestrel endpoint served by an IocpListener.
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Connections;

namespace IocpSrv.Kestrel
{
    internal sealed class IocpConnectionListener : IConnectionListener
    {
        private readonly IocpListener listener;

        public IocpConnectionListener(IocpListener listener) { this.listener = listener; }

        public EndPoint EndPoint => listener.LocalEndPoint;

        public IocpListener Listener => listener;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            IocpConnection? c = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            return c == null ? null : new IocpConnectionContext(c);
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            listener.StopAccepting();
            return default;
        }

        public ValueTask DisposeAsync() => listener.DisposeAsync();
    }
}
