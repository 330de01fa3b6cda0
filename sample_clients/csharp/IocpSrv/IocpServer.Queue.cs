// IocpServer in queue mode (IocpDelivery.Queue, the default): one thread of
// this binding takes the library's events in batches (iocp_wait) and runs
// the handlers there, one at a time.
using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace IocpSrv
{
    public sealed partial class IocpServer
    {
        private readonly Thread drainer;
        private readonly NativeMethods.Event[] events;
        private byte[] dataBuffer;

        private void Drain()
        {
            // Pinned for the loop's life: the library writes each batch
            // straight into the array (an [Out] Event[] parameter made Mono
            // marshal the whole array, all Batch entries, on every call).
            GCHandle pin = GCHandle.Alloc(events, GCHandleType.Pinned);
            try
            {
                IntPtr at = pin.AddrOfPinnedObject();
                for (;;)
                {
                    // One P/Invoke per batch; it also releases the last one.
                    int n = NativeMethods.iocp_wait(handle, at, (uint)events.Length, -1);
                    if (n == IocpErrors.EClosed) return;
                    if (n < 0) throw new IocpException(n, "iocp_wait");
                    for (int i = 0; i < n; i++) Dispatch(ref events[i]);
                }
            }
            catch (Exception e)
            {
                Report("iocp_wait", e);   // the server cannot be drained any more
            }
            finally
            {
                pin.Free();
            }
        }

        private void Dispatch(ref NativeMethods.Event e)
        {
            string where = "OnData";
            try
            {
                switch (e.Type)
                {
                    case NativeMethods.EventData:
                        OnQueuedData(e.Id, new IntPtr((long)e.Data), (int)e.Len);
                        break;
                    case NativeMethods.EventAccepted:
                        where = "OnConnect";
                        bool keep = true;
                        try
                        {
                            if (options.OnConnect != null)
                                keep = options.OnConnect(this, e.Id, Marshal.PtrToStringAnsi(new IntPtr((long)e.Data)),
                                                         (ushort)e.Value);
                        }
                        finally
                        {
                            // Closed before the batch is released: refused, and
                            // no other event comes for this id: its context goes now.
                            if (!keep) Refuse(e.Id);
                        }
                        break;
                    case NativeMethods.EventSent:
                        where = "OnSent";
                        options.OnSent(this, e.Id, e.Len);
                        break;
                    case NativeMethods.EventPeerClosed:
                        where = "OnPeerClosed";
                        options.OnPeerClosed(this, e.Id);
                        break;
                    case NativeMethods.EventDisconnected:
                        where = "OnDisconnect";
                        try { if (options.OnDisconnect != null) options.OnDisconnect(this, e.Id, (IocpReason)e.Value); }
                        finally { ReleaseContext(e.Id); }
                        break;
                    case NativeMethods.EventConnectFailed:
                        where = "OnConnectFailed";
                        try { if (options.OnConnectFailed != null) options.OnConnectFailed(this, e.Id, e.Value); }
                        finally { ReleaseContext(e.Id); }
                        break;
                    case NativeMethods.EventDrain:
                        where = "OnDrain";
                        options.OnDrain(this, e.Id, e.Len);
                        break;
                    case NativeMethods.EventLog:
                        where = "OnLog";
                        options.OnLog(this, (IocpLogLevel)e.Value, (int)(long)e.Context,
                                      Marshal.PtrToStringAnsi(new IntPtr((long)e.Data)));
                        break;
                    default:
                        break;   // a type this binding does not know: skipped, as the header asks
                }
            }
            catch (Exception ex)
            {
                if (where == "OnConnect") Refuse(e.Id);   // never decided to keep it
                Report(where, ex);
            }
        }

        // Queue mode: refuses an ACCEPTED connection (before its batch is
        // released), freeing a context OnConnect may have set.
        private void Refuse(ulong id)
        {
            ReleaseContext(id);
            NativeMethods.iocp_close(handle, id);
        }

        private void OnQueuedData(ulong id, IntPtr data, int len)
        {
            if (options.OnDataSegment != null)
            {
                if (dataBuffer.Length < len) dataBuffer = new byte[len];
                Marshal.Copy(data, dataBuffer, 0, len);
                options.OnDataSegment(this, id, new ArraySegment<byte>(dataBuffer, 0, len));
            }
            else if (options.OnData != null || options.OnDataAsync != null)
            {
                var bytes = new byte[len];
                Marshal.Copy(data, bytes, 0, len);
                if (options.OnDataAsync != null) RunDataAsync(id, bytes);
                else options.OnData(this, id, bytes);
            }
        }
    }
}
