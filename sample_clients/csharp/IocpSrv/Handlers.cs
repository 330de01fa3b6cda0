// The handler types of IocpServerOptions: one delegate per event a server
// reports (see IocpServerOptions for when each runs).
using System;

namespace IocpSrv
{
    public delegate bool ConnectHandler(IocpServer server, ulong id, string address, ushort port);
    public delegate void DataHandler(IocpServer server, ulong id, byte[] data);
    public delegate System.Threading.Tasks.Task DataAsyncHandler(IocpServer server, ulong id, byte[] data);
    public delegate void DataSegmentHandler(IocpServer server, ulong id, ArraySegment<byte> data);
    public delegate void SentHandler(IocpServer server, ulong id, ulong bytes);
    public delegate void PeerClosedHandler(IocpServer server, ulong id);
    public delegate void DisconnectHandler(IocpServer server, ulong id, IocpReason reason);
    public delegate void DrainHandler(IocpServer server, ulong id, ulong queued);
    public delegate void ErrorHandler(IocpServer server, string callback, Exception error);
    public delegate void LogHandler(IocpServer server, IocpLogLevel level, int code, string text);
    public delegate void ConnectFailedHandler(IocpServer server, ulong id, int error);
}
