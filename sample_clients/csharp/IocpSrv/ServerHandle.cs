// The safe handle of one iocp_server: destroys it exactly once, from the
// right thread, even when the IocpServer is never disposed.
using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace IocpSrv
{
    /// <summary>
    /// The iocp_server handle. ReleaseHandle calls iocp_destroy, so a server
    /// that is never disposed is still destroyed by the finalizer. It also
    /// holds the callback delegates: they stay reachable (and their native
    /// thunks valid) until the library has stopped calling them.
    /// </summary>
    internal sealed class ServerHandle : SafeHandle
    {
        internal object KeepAlive;
        internal IntPtr User;      // net8.0: the weak GCHandle the callbacks get as `user`
        internal Thread Drainer;   // queue mode: the thread that drains events

        internal ServerHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        internal void Set(IntPtr server) { SetHandle(server); }

        private readonly object destroyLock = new object();
        private bool destroyed;

        /// <summary>
        /// iocp_destroy, once. IocpServer.Dispose calls it on its own thread
        /// before it closes the SafeHandle: SafeHandle.Dispose only releases
        /// when no P/Invoke holds the handle, and otherwise the release runs
        /// later on the thread of the last such call, which may be a library
        /// worker (an iocp_send inside OnData), where iocp_destroy refuses.
        /// Calls still running or made later with the handle fail cleanly
        /// (the library's destroy contract).
        /// </summary>
        internal int Destroy()
        {
            lock (destroyLock)
            {
                if (destroyed) return 0;
                int rc = NativeMethods.iocp_destroy(handle);
                if (rc == 0)
                {
                    destroyed = true;
                    KeepAlive = null;
                    // No callback runs any more: the handle they used can go.
                    if (User != IntPtr.Zero) GCHandle.FromIntPtr(User).Free();
                    User = IntPtr.Zero;
                }
                return rc;
            }
        }

        protected override bool ReleaseHandle()
        {
            int rc = Destroy();
            if (rc == IocpErrors.EInCallback)
            {
                // The last reference went away on a library worker: destroy
                // from a thread of our own, which the library accepts.
                var t = new System.Threading.Thread(() => Destroy());
                t.IsBackground = true;
                t.Start();
                return true;
            }
            return rc == 0;
        }
    }
}
