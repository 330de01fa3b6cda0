// One IocpConnection as Kestrel sees a connection.
using System;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Net;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace IocpSrv.Kestrel
{
    internal sealed class IocpConnectionContext : ConnectionContext, IDuplexPipe
    {
        private readonly IocpConnection connection;
        private IDictionary<object, object?> items = new Dictionary<object, object?>();

        public IocpConnectionContext(IocpConnection connection)
        {
            this.connection = connection;
            ConnectionId = "iocp-" + connection.Id.ToString("x");
            Features.Set<IocpConnection>(connection);
        }

        public override string ConnectionId { get; set; }
        public override IFeatureCollection Features { get; } = new FeatureCollection();
        public override IDictionary<object, object?> Items { get => items; set => items = value; }
        public override IDuplexPipe Transport { get => this; set => throw new NotSupportedException(); }
        public override EndPoint? RemoteEndPoint { get => connection.RemoteEndPoint; set => throw new NotSupportedException(); }
        public override EndPoint? LocalEndPoint { get => connection.LocalEndPoint; set => throw new NotSupportedException(); }
        public override CancellationToken ConnectionClosed { get => connection.ConnectionClosed; set => throw new NotSupportedException(); }

        PipeReader IDuplexPipe.Input => connection.Input;
        PipeWriter IDuplexPipe.Output => connection.Output;

        public override void Abort(ConnectionAbortedException abortReason) => connection.Abort();

        public override ValueTask DisposeAsync() => connection.DisposeAsync();
    }
}
