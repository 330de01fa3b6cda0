// The transport Kestrel asks for listeners: IPEndPoints only.
using System;
using System.Collections.Generic;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Options;

namespace IocpSrv.Kestrel
{
    /// <summary>Kestrel's transport on iocpsrv (registered by UseIocpSrv).</summary>
    public sealed class IocpConnectionListenerFactory : IConnectionListenerFactory, IConnectionListenerFactorySelector
    {
        private readonly IocpTransportOptions options;
        private readonly List<IocpListener> listeners = new List<IocpListener>();

        /// <summary>Created by dependency injection with the options UseIocpSrv configured.</summary>
        public IocpConnectionListenerFactory(IOptions<IocpTransportOptions> options)
        {
            this.options = options.Value;
        }

        /// <summary>The listeners bound so far (their servers' statistics, for instance).</summary>
        public IReadOnlyList<IocpListener> Listeners
        {
            get { lock (listeners) return listeners.ToArray(); }
        }

        /// <summary>True for an IPEndPoint (no Unix sockets, no named pipes).</summary>
        public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;

        /// <summary>Listens on the endpoint (port 0 picks one).</summary>
        public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
        {
            if (endpoint is not IPEndPoint ip)
                throw new NotSupportedException("iocpsrv listens on IP endpoints only: " + endpoint);
            IocpListener listener = IocpListener.Listen(ip, options.Listener);
            lock (listeners) listeners.Add(listener);
            return new ValueTask<IConnectionListener>(new IocpConnectionListener(listener));
        }
    }
}
