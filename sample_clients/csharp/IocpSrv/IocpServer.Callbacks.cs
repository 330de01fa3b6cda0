// IocpServer in callback mode (IocpDelivery.Callbacks): the trampolines the
// library's worker threads call through reverse P/Invoke, which run the
// handlers and let no exception back into native code.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;

namespace IocpSrv
{
    public sealed partial class IocpServer
    {
        private void Enter()
        {
            if (!created)
            {
                lock (createLock)
                {
                    while (!created) Monitor.Wait(createLock);
                }
            }
            if (running == null) running = new List<IocpServer>();
            running.Add(this);
        }

        private void Leave()
        {
            running.RemoveAt(running.Count - 1);
        }

        private void Report(string callback, Exception e)
        {
            try
            {
                if (options.OnError != null) options.OnError(this, callback, e);
                else Console.Error.WriteLine("iocpsrv: exception in " + callback + " (ignored): " + e);
            }
            catch (Exception e2)
            {
                try { Console.Error.WriteLine("iocpsrv: OnError threw: " + e2); }
                catch (Exception) { }
            }
        }

        private int ConnectTrampoline(IntPtr server, IntPtr user, ulong id, IntPtr address, ushort port)
        {
            try
            {
                Enter();
                int refuse = 1;   // it never decided to keep the peer: refuse
                try
                {
                    refuse = options.OnConnect == null ||
                             options.OnConnect(this, id, Marshal.PtrToStringAnsi(address), port) ? 0 : 1;
                    return refuse;
                }
                finally
                {
                    // No OnDisconnect follows a refusal: free a context here.
                    if (refuse != 0) ReleaseContext(id);
                    Leave();
                }
            }
            catch (Exception e)
            {
                Report("OnConnect", e);
                return 1;
            }
        }

        private void DataTrampoline(IntPtr server, IntPtr user, ulong id, IntPtr data, UIntPtr len)
        {
            try
            {
                Enter();
                try
                {
                    // Valid only during the call: copy.
                    var bytes = new byte[(int)len.ToUInt64()];
                    if (bytes.Length > 0) Marshal.Copy(data, bytes, 0, bytes.Length);
                    if (options.OnDataAsync != null) RunDataAsync(id, bytes);
                    else options.OnData(this, id, bytes);
                }
                finally
                {
                    Leave();
                }
            }
            catch (Exception e)
            {
                Report("OnData", e);
            }
        }

        private void SentTrampoline(IntPtr server, IntPtr user, ulong id, ulong bytes)
        {
            try
            {
                Enter();
                try { options.OnSent(this, id, bytes); }
                finally { Leave(); }
            }
            catch (Exception e)
            {
                Report("OnSent", e);
            }
        }

        private void PeerClosedTrampoline(IntPtr server, IntPtr user, ulong id)
        {
            try
            {
                Enter();
                try { options.OnPeerClosed(this, id); }
                finally { Leave(); }
            }
            catch (Exception e)
            {
                Report("OnPeerClosed", e);
            }
        }

        private void ConnectFailedTrampoline(IntPtr server, IntPtr user, ulong id, int error)
        {
            try
            {
                Enter();
                try { if (options.OnConnectFailed != null) options.OnConnectFailed(this, id, error); }
                finally
                {
                    ReleaseContext(id);
                    Leave();
                }
            }
            catch (Exception e)
            {
                Report("OnConnectFailed", e);
            }
        }

        // Not Enter(): OnLog may run on the constructing thread inside
        // iocp_create, where waiting for `created` would never end.
        private void LogTrampoline(IntPtr server, IntPtr user, int level, int code, IntPtr text)
        {
            try
            {
                if (running == null) running = new List<IocpServer>();
                running.Add(this);
                try { options.OnLog(this, (IocpLogLevel)level, code, Marshal.PtrToStringAnsi(text)); }
                finally { Leave(); }
            }
            catch (Exception e)
            {
                Report("OnLog", e);
            }
        }

        private void DisconnectTrampoline(IntPtr server, IntPtr user, ulong id, int reason)
        {
            try
            {
                Enter();
                try { if (options.OnDisconnect != null) options.OnDisconnect(this, id, (IocpReason)reason); }
                finally
                {
                    ReleaseContext(id);
                    Leave();
                }
            }
            catch (Exception e)
            {
                Report("OnDisconnect", e);
            }
        }

        private void DrainTrampoline(IntPtr server, IntPtr user, ulong id, ulong queued)
        {
            try
            {
                Enter();
                try { options.OnDrain(this, id, queued); }
                finally { Leave(); }
            }
            catch (Exception e)
            {
                Report("OnDrain", e);
            }
        }
    }
}
