// iocpsrv from .NET: a P/Invoke binding of api/iocpsrv.h.
//
//   var options = new IocpServerOptions { Port = 0 };
//   options.OnData = (server, id, data) => server.Send(id, data);   // echo
//   using (var server = new IocpServer(options)) {
//       Console.WriteLine("listening on port " + server.Port);
//       Console.ReadLine();
//   }
//
// The library is "iocpsrv": iocpsrv.dll on Windows (next to the program or on
// PATH), libiocpsrv.so under Mono/.NET on Linux (LD_LIBRARY_PATH). Every entry
// point and callback is cdecl (the header's IOCP_CALL).
//
// Two delivery modes (IocpServerOptions.Mode):
// - IocpDelivery.Queue (the default): the library queues events and one
//   thread of this wrapper takes them in batches (iocp_wait: one P/Invoke per
//   batch, no calls from native code into managed code, no delegates for the
//   library to keep alive) and runs the handlers there, one at a time.
//   OnDataSegment receives the bytes without a copy it did not ask for: an
//   ArraySegment over a buffer reused for the next event (OnData gets a copy).
// - IocpDelivery.Callbacks: the handlers run on the library's worker threads
//   through reverse P/Invoke; different connections run in parallel.
// In both, handlers of one connection never overlap and arrive in order.
// Send/Shutdown/Close(id)/Queued are fine from any thread, handlers included;
// Dispose() is not allowed inside a handler of the same server (it throws
// IocpException with IOCP_EINCALLBACK).
//
// Plain C# 5 and only System / System.Runtime.InteropServices, so that the
// same files build with Mono's mcs (cs_binding_src in ../meson.build) and
// with the .NET SDK (IocpSrv.csproj) alike.
//
// This file: the server's life (create, Dispose, process exit). Beside it:
// IocpServer.Connections.cs (the calls on a running server),
// IocpServer.Queue.cs and IocpServer.Callbacks.cs (the two delivery modes),
// IocpServerOptions.cs and Handlers.cs (what a server is created with),
// IocpLibrary.cs (version checks), NativeMethods.cs (the C API),
// ServerHandle.cs (the native handle), and one file per enum, the error
// codes and each exception.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;

namespace IocpSrv
{
    /// <summary>
    /// One server. Callbacks run on library worker threads; exceptions they
    /// throw are caught before returning to native code and passed to
    /// OnError (an exception in OnConnect refuses the connection). Dispose()
    /// destroys the server: every open connection gets OnDisconnect(Destroy)
    /// before it returns and no callback runs afterwards.
    /// </summary>
    public sealed partial class IocpServer : IDisposable
    {
        private readonly ServerHandle handle = new ServerHandle();
        private readonly IocpServerOptions options;
        // Set once iocp_create has returned; callbacks that fire before that
        // (a client connecting at once) wait for it so they can use Send.
        // A monitor, not a WaitHandle: no finalizer of its own that could run
        // before ServerHandle's during an undisposed server's collection.
        private readonly object createLock = new object();
        private volatile bool created;

#if !NET8_0_OR_GREATER
        // The delegates handed to native code: fields, so they live as long as
        // this object; ServerHandle.KeepAlive also holds them so they outlive
        // it until iocp_destroy has returned, even on the finalizer path.
        private readonly NativeMethods.OnConnectFn onConnect;
        private readonly NativeMethods.OnDataFn onData;
        private readonly NativeMethods.OnSentFn onSent;
        private readonly NativeMethods.OnPeerClosedFn onPeerClosed;
        private readonly NativeMethods.OnDisconnectFn onDisconnect;
        private readonly NativeMethods.OnLogFn onLog;
        private readonly NativeMethods.OnConnectFailedFn onConnectFailed;
        private readonly NativeMethods.OnDrainFn onDrain;
#endif

        // The servers whose callbacks run on this thread (for Dispose).
        [ThreadStatic] private static List<IocpServer> running;

        // Every server not yet destroyed, weakly (long weak references to the
        // handles, valid until their finalizer has run), so that process exit
        // can destroy them. Without that, Mono would hang at exit: a library
        // worker that has called back counts as a managed thread, Mono waits
        // for such threads at exit, and they only stop in iocp_destroy.
        private static readonly List<WeakReference> live = new List<WeakReference>();
        private readonly WeakReference liveEntry;

        static IocpServer()
        {
            AppDomain.CurrentDomain.ProcessExit += DestroyAllAtExit;
        }

        private static void DestroyAllAtExit(object sender, EventArgs e)
        {
            WeakReference[] all;
            lock (live) all = live.ToArray();
            foreach (var entry in all)
            {
                try
                {
                    var h = entry.Target as ServerHandle;
                    if (h == null) continue;
                    // Queue mode: let the drainer see the end before the
                    // handle goes (it holds the handle inside iocp_wait).
                    if (h.Drainer != null && !h.IsClosed && NativeMethods.iocp_stop(h) == 0)
                        h.Drainer.Join(10000);
                    if (!h.IsClosed) h.Destroy();
                    h.Dispose();
                }
                catch (Exception)
                {
                    // Nothing sensible to do while the process ends.
                }
            }
        }

        public IocpServer(IocpServerOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            IocpLibrary.EnsureCompatible();
            options = options.Snapshot();   // read once: later changes do nothing
            this.options = options;

            var config = new NativeMethods.Config();
            Check(NativeMethods.iocp_config_init(ref config, (uint)Marshal.SizeOf(typeof(NativeMethods.Config))),
                  "iocp_config_init");
            config.Port = options.Port;
            config.Threads = options.Threads;
            if (options.Backlog != 0) config.Backlog = options.Backlog;
            if (options.AcceptsPosted != 0) config.AcceptsPosted = options.AcceptsPosted;
            if (options.RecvBufferSize != 0) config.RecvBufferSize = options.RecvBufferSize;
            if (options.MaxSendQueue != 0) config.MaxSendQueue = options.MaxSendQueue;
            config.NoDelay = options.NoDelay ? 1u : 0u;
            if (options.Mode != IocpDelivery.Queue && options.Mode != IocpDelivery.Callbacks)
                throw new ArgumentException("unknown delivery mode", "options");
            if (options.Mode == IocpDelivery.Queue)
            {
                if (options.Batch < 1) throw new ArgumentOutOfRangeException("options", "Batch must be at least 1");
                config.Delivery = (uint)IocpDelivery.Queue;
                if (options.OnSent != null) config.QueueEvents |= 1u << (int)NativeMethods.EventSent;
                if (options.OnPeerClosed != null) config.QueueEvents |= 1u << (int)NativeMethods.EventPeerClosed;
                if (options.OnDrain != null) config.QueueEvents |= 1u << (int)NativeMethods.EventDrain;
                // Log messages come as events too: no callback at all.
                if (options.OnLog != null) config.QueueEvents |= 1u << (int)NativeMethods.EventLog;
            }
            else if (options.OnDataSegment != null)
            {
                throw new ArgumentException("OnDataSegment needs IocpDelivery.Queue", "options");
            }
            config.DualStack = options.DualStack ? 1u : 0u;
            config.IdleTimeoutMs = options.IdleTimeoutMs;
            config.MaxConnections = options.MaxConnections;
            config.KeepAlive = options.KeepAlive ? 1u : 0u;
            config.KeepAliveIdleMs = options.KeepAliveIdleMs;
            config.KeepAliveIntervalMs = options.KeepAliveIntervalMs;
            config.DrainMark = options.DrainMark;

            var callbacks = new NativeMethods.Callbacks();
            callbacks.Size = (uint)Marshal.SizeOf(typeof(NativeMethods.Callbacks));
            bool queue = options.Mode == IocpDelivery.Queue;
            // Callback mode: OnConnect and OnDisconnect (and OnConnectFailed)
            // are always set: they free the context of a refused or ended
            // connection. Queue mode sets no callback at all.
#if NET8_0_OR_GREATER
            // Function pointers, and `user` a weak handle to this server.
            IntPtr user = IntPtr.Zero;
            if (!queue)
            {
                SetCallbacks(ref callbacks);
                user = GCHandle.ToIntPtr(GCHandle.Alloc(this, GCHandleType.Weak));
                handle.User = user;
            }
#else
            IntPtr user = IntPtr.Zero;
            if (!queue)
            {
                onConnect = ConnectTrampoline;
                callbacks.OnConnect = Marshal.GetFunctionPointerForDelegate(onConnect);
            }
            if ((options.OnData != null || options.OnDataAsync != null) && !queue)
            {
                onData = DataTrampoline;
                callbacks.OnData = Marshal.GetFunctionPointerForDelegate(onData);
            }
            if (options.OnSent != null && !queue)
            {
                onSent = SentTrampoline;
                callbacks.OnSent = Marshal.GetFunctionPointerForDelegate(onSent);
            }
            if (options.OnPeerClosed != null && !queue)
            {
                onPeerClosed = PeerClosedTrampoline;
                callbacks.OnPeerClosed = Marshal.GetFunctionPointerForDelegate(onPeerClosed);
            }
            if (!queue)
            {
                onDisconnect = DisconnectTrampoline;
                callbacks.OnDisconnect = Marshal.GetFunctionPointerForDelegate(onDisconnect);
            }
            if (options.OnDrain != null && !queue)
            {
                onDrain = DrainTrampoline;
                callbacks.OnDrain = Marshal.GetFunctionPointerForDelegate(onDrain);
            }
            if (options.OnLog != null && !queue)
            {
                onLog = LogTrampoline;
                callbacks.OnLog = Marshal.GetFunctionPointerForDelegate(onLog);
            }
            if (!queue)
            {
                onConnectFailed = ConnectFailedTrampoline;
                callbacks.OnConnectFailed = Marshal.GetFunctionPointerForDelegate(onConnectFailed);
            }
            handle.KeepAlive = new object[] { onConnect, onData, onSent, onPeerClosed, onDisconnect,
                                              onLog, onConnectFailed, onDrain };
#endif

            IntPtr bind = Marshal.StringToHGlobalAnsi(options.Bind ?? "127.0.0.1");
            IntPtr[] tlsMemory = null;
            int rc;
            try
            {
                if (options.Tls != null) tlsMemory = options.Tls.Fill(ref config);   // read by iocp_create
                config.BindAddress = bind;   // copied by iocp_create
                IntPtr server;
                // Queue mode passes no callbacks.
                rc = queue
                    ? NativeMethods.iocp_create(ref config, IntPtr.Zero, IntPtr.Zero, out server)
                    : NativeMethods.iocp_create(ref config, ref callbacks, user, out server);
                if (rc == 0) handle.Set(server);
            }
            finally
            {
                Marshal.FreeHGlobal(bind);
                IocpTlsOptions.Free(tlsMemory);
                lock (createLock)
                {
                    created = true;
                    Monitor.PulseAll(createLock);
                }
            }
            if (rc != 0)
            {
                if (handle.User != IntPtr.Zero) GCHandle.FromIntPtr(handle.User).Free();
                handle.User = IntPtr.Zero;
                throw new IocpException(rc, "cannot listen on " + options.Bind + " port " + options.Port);
            }
            liveEntry = new WeakReference(handle, true);
            lock (live) live.Add(liveEntry);
            if (queue)
            {
                events = new NativeMethods.Event[options.Batch];
                dataBuffer = new byte[Math.Max(config.RecvBufferSize, 64u)];
                drainer = new Thread(Drain);
                drainer.IsBackground = true;
                drainer.Name = "iocpsrv:" + Port;
                handle.Drainer = drainer;
                drainer.Start();
            }
        }


        /// <summary>
        /// Destroys the server (iocp_destroy). From inside one of this
        /// server's callbacks it throws IocpException(EInCallback) and
        /// destroys nothing: dispose from another thread.
        /// </summary>
        public void Dispose()
        {
            if (drainer != null)
            {
                if (Thread.CurrentThread == drainer)
                    throw new IocpException(IocpErrors.EInCallback, "iocp_destroy");
                // Every OnDisconnect is delivered: stop, and let the drainer
                // take the rest until iocp_wait says the server is finished.
                if (!handle.IsClosed) NativeMethods.iocp_stop(handle);
                drainer.Join();
            }
            else if (running != null && running.Contains(this) && !handle.IsClosed)
            {
                // The library refuses at once; ask it so the error is its own.
                int rc = NativeMethods.iocp_destroy(handle.DangerousGetHandle());
                if (rc != 0) throw new IocpException(rc, "iocp_destroy");
            }
            if (!handle.IsClosed)
            {
                int rc = handle.Destroy();
                if (rc != 0) throw new IocpException(rc, "iocp_destroy");
            }
            handle.Dispose();
            if (liveEntry != null)
            {
                lock (live) live.Remove(liveEntry);
            }
        }

        private static void Check(int rc, string what)
        {
            if (rc < 0) throw new IocpException(rc, what);
        }
    }
}
