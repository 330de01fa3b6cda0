// IocpServer while it runs: what it reports (port, counts, statistics, the
// listening address) and what it does to one connection (Connect, Send,
// Shutdown, Close, Queued and the 1.1 controls: context, pause, drain mark,
// idle timeout), plus the graceful stop. Any thread, handlers included
// (StopGracefully excepted: it blocks, and refuses inside a handler).
using System;
using System.Runtime.InteropServices;

namespace IocpSrv
{
    public sealed partial class IocpServer
    {
        /// <summary>The port listened on (useful after Port = 0).</summary>
        public ushort Port { get { return NativeMethods.iocp_port(handle); } }

        /// <summary>Connections currently open.</summary>
        public ulong ConnectionCount { get { return NativeMethods.iocp_connection_count(handle); } }

        /// <summary>The server's counters since it started (iocp_stats), a snapshot.</summary>
        public IocpStatistics Statistics
        {
            get
            {
                NativeMethods.Statistics st = new NativeMethods.Statistics();
                st.Size = (uint)Marshal.SizeOf(typeof(NativeMethods.Statistics));
                int rc = NativeMethods.iocp_stats(handle, ref st);
                if (rc != 0) throw new IocpException(rc, "iocp_stats");
                return new IocpStatistics(st);
            }
        }

        /// <summary>The address listened on as the system reports it, e.g. "::" or "127.0.0.1".</summary>
        public string ListenAddress
        {
            get
            {
                var text = new byte[IocpAddrStrLen];
                ushort port;
                Check(NativeMethods.iocp_listen_address(handle, text, new UIntPtr((uint)text.Length), out port),
                      "iocp_listen_address");
                int n = Array.IndexOf(text, (byte)0);
                return System.Text.Encoding.ASCII.GetString(text, 0, n < 0 ? text.Length : n);
            }
        }

        private const int IocpAddrStrLen = 64; // IOCP_ADDRSTRLEN

        /// <summary>
        /// The local address of a connection as the system reports it, and
        /// its port: for an accepted one the address the peer reached, for an
        /// outbound one the address and port the system chose. Throws
        /// IocpException (ENotFound: unknown or stale id; EClosed: closing).
        /// </summary>
        public string LocalAddress(ulong id, out ushort port)
        {
            var text = new byte[IocpAddrStrLen];
            Check(NativeMethods.iocp_local_address(handle, id, text, new UIntPtr((uint)text.Length), out port),
                  "iocp_local_address");
            int n = Array.IndexOf(text, (byte)0);
            return System.Text.Encoding.ASCII.GetString(text, 0, n < 0 ? text.Length : n);
        }

        /// <summary>
        /// Opens an outbound connection (iocp_connect) and returns its id. The
        /// host is a numeric IPv4 or IPv6 address: the library does no DNS
        /// (resolve names first, e.g. with System.Net.Dns). The id gets the
        /// same callbacks as an accepted connection (OnConnect once
        /// established), or OnConnectFailed as its only one. Throws
        /// ArgumentException for a null host or port 0, IocpException
        /// (EInval: not a numeric address; EClosed, EMFile, ENoMem, ESystem).
        /// </summary>
        public ulong Connect(string host, ushort port)
        {
            if (host == null) throw new ArgumentNullException("host");
            if (port == 0) throw new ArgumentOutOfRangeException("port");
            byte[] text = System.Text.Encoding.ASCII.GetBytes(host + "\0");
            ulong id;
            Check(NativeMethods.iocp_connect(handle, text, port, out id), "iocp_connect " + host + " port " + port);
            return id;
        }

        /// <summary>Queues a copy of the bytes. Throws IocpException (e.g. EQueueFull: nothing queued).</summary>
        public void Send(ulong id, byte[] data)
        {
            if (data == null) throw new ArgumentNullException("data");
            Send(id, data, 0, data.Length);
        }

        public void Send(ulong id, ArraySegment<byte> data)
        {
            Send(id, data.Array, data.Offset, data.Count);
        }

        public void Send(ulong id, byte[] data, int offset, int count)
        {
            if (data == null) throw new ArgumentNullException("data");
            if (offset < 0 || count < 0 || offset > data.Length - count) throw new ArgumentOutOfRangeException("count");
            if (offset == 0)
            {
                // Pinned by the marshaler for the call: no GCHandle needed.
                Check(NativeMethods.iocp_send(handle, id, data, new UIntPtr((uint)count)), "iocp_send");
                return;
            }
            GCHandle pin = GCHandle.Alloc(data, GCHandleType.Pinned);
            try
            {
                IntPtr p = new IntPtr(pin.AddrOfPinnedObject().ToInt64() + offset);
                Check(NativeMethods.iocp_send(handle, id, p, new UIntPtr((uint)count)), "iocp_send");
            }
            finally
            {
                pin.Free();
            }
        }

        /// <summary>Graceful half-close: queued bytes go out, then FIN.</summary>
        public void Shutdown(ulong id) { Check(NativeMethods.iocp_shutdown(handle, id), "iocp_shutdown"); }

        /// <summary>Abortive close of one connection (RST; queued bytes dropped).</summary>
        public void Close(ulong id) { Check(NativeMethods.iocp_close(handle, id), "iocp_close"); }

        /// <summary>Bytes queued for the connection and not yet handed to the system.</summary>
        public ulong Queued(ulong id)
        {
            ulong n;
            Check(NativeMethods.iocp_queued(handle, id, out n), "iocp_queued");
            return n;
        }

        // ---- 1.1 controls; any thread, callbacks included ----

        /// <summary>
        /// Attaches any object to the connection (null clears it); GetContext
        /// returns it until OnDisconnect has returned (there included). Safe
        /// from any number of threads at once, while the connection ends too:
        /// the objects live in this server's table (never a GCHandle the
        /// library hands back), so none is freed twice and none outlives its
        /// connection. Throws IocpException (ENotFound once the connection
        /// has ended, or OnDisconnect has started).
        /// </summary>
        public void SetContext(ulong id, object context)
        {
            lock (contexts)
            {
                // The library checks the id (and says ENotFound once the
                // last event has started); the object stays managed.
                Check(NativeMethods.iocp_set_context(handle, id, IntPtr.Zero), "iocp_set_context");
                object before;
                bool had = contexts.TryGetValue(id, out before);
                if (context == null) contexts.Remove(id);
                else contexts[id] = context;
                // Ended between the check and now (the library let the store
                // in late): its release may have run already, and a new entry
                // would stay forever. Put back what was there (which the
                // release, if still to come, takes away).
                IntPtr unused;
                if (NativeMethods.iocp_get_context(handle, id, out unused) == IocpErrors.ENotFound)
                {
                    if (had) contexts[id] = before;
                    else contexts.Remove(id);
                    throw new IocpException(IocpErrors.ENotFound, "iocp_set_context");
                }
            }
        }

        /// <summary>The object set with SetContext, or null.</summary>
        public object GetContext(ulong id)
        {
            lock (contexts)
            {
                object o;
                if (contexts.TryGetValue(id, out o)) return o;
            }
            IntPtr p;
            Check(NativeMethods.iocp_get_context(handle, id, out p), "iocp_get_context");
            return null;
        }

        /// <summary>Stops receiving (iocp_pause_recv): the peer's bytes wait in the kernel.</summary>
        public void PauseReceive(ulong id) { Check(NativeMethods.iocp_pause_recv(handle, id), "iocp_pause_recv"); }

        /// <summary>Receives again after PauseReceive (iocp_resume_recv).</summary>
        public void ResumeReceive(ulong id) { Check(NativeMethods.iocp_resume_recv(handle, id), "iocp_resume_recv"); }

        /// <summary>OnDrain fires when this connection's queue falls to mark bytes (0 = empty).</summary>
        public void SetDrainMark(ulong id, ulong mark) { Check(NativeMethods.iocp_set_drain_mark(handle, id, mark), "iocp_set_drain_mark"); }

        /// <summary>This connection's idle timeout in ms (0 = none); its clock restarts.</summary>
        public void SetIdleTimeout(ulong id, uint timeoutMs) { Check(NativeMethods.iocp_set_idle_timeout(handle, id, timeoutMs), "iocp_set_idle_timeout"); }

        /// <summary>
        /// Graceful stop (iocp_stop_graceful): stops accepting, half-closes
        /// every connection after its queued bytes, waits up to timeoutMs for
        /// the peers to finish, then closes the rest (IocpReason.StopDeadline).
        /// Returns how many were closed at the deadline. Blocks; not from
        /// inside a callback (EInCallback). Dispose afterwards.
        /// </summary>
        public int StopGracefully(uint timeoutMs)
        {
            int rc = NativeMethods.iocp_stop_graceful(handle, timeoutMs);
            Check(rc, "iocp_stop_graceful");
            return rc;
        }

        /// <summary>Connections refused because MaxConnections was reached.</summary>
        public ulong RefusedCount { get { return NativeMethods.iocp_refused_count(handle); } }

        // Every context set on a live connection, by id; the authority (the
        // library's own context pointer is left NULL).
        private readonly System.Collections.Generic.Dictionary<ulong, object> contexts =
            new System.Collections.Generic.Dictionary<ulong, object>();
        // Contexts held (tests: none is left once every connection ended).
        internal int ContextCount { get { lock (contexts) return contexts.Count; } }

        // After the connection's last handler (OnDisconnect, OnConnectFailed,
        // a refusing OnConnect): its context stays readable during the
        // handler, and goes when it returns.
        private void ReleaseContext(ulong id)
        {
            lock (contexts)
            {
                contexts.Remove(id);
            }
        }
    }
}
