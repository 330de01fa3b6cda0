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
// Plain C# 5 and only System / System.Runtime.InteropServices, so that it
// builds with Mono's mcs and with the .NET SDK on Windows alike.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;

namespace IocpSrv
{
    /// <summary>Why a connection ended (enum iocp_reason).</summary>
    public enum IocpReason
    {
        PeerClosed = 1,
        Reset = 2,
        LocalClose = 3,
        Destroy = 4,
        /// <summary>No traffic for its idle timeout (1.1).</summary>
        IdleTimeout = 5,
        /// <summary>StopGracefully reached its deadline (1.1).</summary>
        StopDeadline = 6,
    }

    /// <summary>The library's error codes (enum iocp_errno); never renumbered.</summary>
    public static class IocpErrors
    {
        public const int Ok = 0;
        public const int EInval = -1;
        public const int ENoMem = -2;
        public const int ENotFound = -3;
        public const int EShutdown = -4;
        public const int EQueueFull = -5;
        public const int EAddrInUse = -6;
        public const int EAddrNotAvail = -7;
        public const int EVersion = -8;
        public const int EInCallback = -9;
        public const int ESystem = -10;
        public const int EAcces = -11;
        public const int EAfNoSupport = -12;
        public const int EClosed = -13;
        public const int EMode = -14;
        public const int EBusy = -15;
        public const int EConnRefused = -16;
        public const int ETimedOut = -17;
        public const int EUnreach = -18;
        public const int EMFile = -19;
        public const int EStopped = -20;
    }

    /// <summary>How events reach the handlers (enum iocp_delivery).</summary>
    public enum IocpDelivery
    {
        Callbacks = 0,
        Queue = 1,
    }

    /// <summary>Levels of OnLog messages (enum iocp_log_level); lower is more severe.</summary>
    public enum IocpLogLevel
    {
        Error = 1,
        Warn = 2,
        Info = 3,
    }

    /// <summary>A negative return code of the library.</summary>
    public class IocpException : Exception
    {
        public int Code { get; private set; }
        public string Name { get; private set; }

        public IocpException(int code, string what)
            : base(what + ": " + IocpLibrary.StrError(code) + " (" + IocpLibrary.ErrName(code) + ", " + code + ")")
        {
            Code = code;
            Name = IocpLibrary.ErrName(code);
        }
    }

    /// <summary>The library is missing, lacks a function, or is incompatible.</summary>
    /// <summary>A server's counters (iocp_statistics), read by IocpServer.Statistics.</summary>
    public sealed class IocpStatistics
    {
        public ulong ConnectionsAccepted { get; private set; }
        public ulong ConnectionsRefused { get; private set; }
        public ulong ConnectionsOpen { get; private set; }
        public ulong BytesReceived { get; private set; }
        public ulong BytesSent { get; private set; }
        public ulong BytesQueued { get; private set; }
        public ulong AcceptErrors { get; private set; }
        public ulong SystemErrors { get; private set; }

        internal IocpStatistics(NativeMethods.Statistics st)
        {
            ConnectionsAccepted = st.ConnectionsAccepted;
            ConnectionsRefused = st.ConnectionsRefused;
            ConnectionsOpen = st.ConnectionsOpen;
            BytesReceived = st.BytesReceived;
            BytesSent = st.BytesSent;
            BytesQueued = st.BytesQueued;
            AcceptErrors = st.AcceptErrors;
            SystemErrors = st.SystemErrors;
        }
    }

    public class IocpLibraryException : Exception
    {
        public IocpLibraryException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>The raw C API. Mirrors api/iocpsrv.h; see there for semantics.</summary>
    internal static class NativeMethods
    {
        private const string Lib = "iocpsrv";

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int OnConnectFn(IntPtr server, IntPtr user, ulong id, IntPtr address, ushort port);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void OnDataFn(IntPtr server, IntPtr user, ulong id, IntPtr data, UIntPtr len);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void OnSentFn(IntPtr server, IntPtr user, ulong id, ulong bytes);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void OnPeerClosedFn(IntPtr server, IntPtr user, ulong id);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void OnDisconnectFn(IntPtr server, IntPtr user, ulong id, int reason);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void OnLogFn(IntPtr server, IntPtr user, int level, int code, IntPtr text);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void OnConnectFailedFn(IntPtr server, IntPtr user, ulong id, int error);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void OnDrainFn(IntPtr server, IntPtr user, ulong id, ulong queued);

        // struct iocp_callbacks: 72 bytes on 64-bit, 40 on 32-bit. Function
        // pointers are kept as IntPtr (from GetFunctionPointerForDelegate) so
        // the struct stays blittable and no marshaling copies are involved.
        [StructLayout(LayoutKind.Sequential)]
        internal struct Callbacks
        {
            public uint Size;
            public uint Reserved;
            public IntPtr OnConnect;
            public IntPtr OnData;
            public IntPtr OnSent;
            public IntPtr OnPeerClosed;
            public IntPtr OnDisconnect;
            public IntPtr OnLog;            // 1.1
            public IntPtr OnConnectFailed;  // 1.1
            public IntPtr OnDrain;          // 1.1
        }

        // struct iocp_config: 88 bytes on 64-bit (and on Windows x86, where
        // uint64_t is 8-aligned inside structs). BindAddress is an IntPtr to
        // an ANSI string we allocate, not a marshaled string: iocp_config_init
        // writes a pointer to the library's own static text into it, which
        // the marshaler must never try to free.
        [StructLayout(LayoutKind.Sequential)]
        internal struct Config
        {
            public uint Size;
            public ushort Port;
            public ushort Reserved;
            public IntPtr BindAddress;
            public uint Threads;
            public uint Backlog;
            public uint AcceptsPosted;
            public uint RecvBufferSize;
            public ulong MaxSendQueue;
            public uint NoDelay;
            public uint Reserved2;
            public uint DualStack;          // 1.1
            public uint Reserved3;
            // 1.1
            public uint IdleTimeoutMs;
            public uint MaxConnections;
            public uint KeepAlive;
            public uint KeepAliveIdleMs;
            public uint KeepAliveIntervalMs;
            public uint Reserved4;
            public ulong DrainMark;
            // 1.1, batched events
            public uint Delivery;
            public uint QueueEvents;
        }

        // enum iocp_event_type
        internal const uint EventAccepted = 1;
        internal const uint EventData = 2;
        internal const uint EventSent = 3;
        internal const uint EventPeerClosed = 4;
        internal const uint EventDisconnected = 5;
        internal const uint EventConnectFailed = 6;
        internal const uint EventLog = 7;
        internal const uint EventDrain = 8;

        // struct iocp_event: 40 bytes, the same on every platform; blittable,
        // so an array of it is passed pinned, never copied.
        [StructLayout(LayoutKind.Sequential)]
        internal struct Event
        {
            public uint Type;
            public int Value;
            public ulong Id;
            public ulong Data;   // an address (IntPtr) widened to 64 bits
            public ulong Len;
            public ulong Context;   // the connection's context (a GCHandle here), widened
        }

        // struct iocp_statistics: 72 bytes everywhere (all fields 8-aligned).
        [StructLayout(LayoutKind.Sequential)]
        internal struct Statistics
        {
            public uint Size;
            public uint Reserved;
            public ulong ConnectionsAccepted;
            public ulong ConnectionsRefused;
            public ulong ConnectionsOpen;
            public ulong BytesReceived;
            public ulong BytesSent;
            public ulong BytesQueued;
            public ulong AcceptErrors;
            public ulong SystemErrors;
        }

        // Functions returning `const char *` to static storage are declared
        // IntPtr: a string return type would make the marshaler free it.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern uint iocp_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr iocp_version_string();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr iocp_strerror(int err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern IntPtr iocp_err_name(int err);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_config_init(ref Config config, uint size);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_create(ref Config config, ref Callbacks callbacks, IntPtr user,
                                               out IntPtr server);

        // Queue mode: callbacks NULL.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_create(ref Config config, IntPtr callbacks, IntPtr user,
                                                     out IntPtr server);

        // events: a pinned Event[] (the drain loop pins its array once, so
        // no call marshals or copies it).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_wait(ServerHandle server, IntPtr events, uint max, int timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_wake(ServerHandle server);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_stop(ServerHandle server);

        // A byte[] is pinned by the marshaler for the call (no copy).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_send(ServerHandle server, ulong id, byte[] data, UIntPtr len);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_send(ServerHandle server, ulong id, IntPtr data, UIntPtr len);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_shutdown(ServerHandle server, ulong id);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_close(ServerHandle server, ulong id);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_queued(ServerHandle server, ulong id, out ulong queued);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ushort iocp_port(ServerHandle server);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ulong iocp_connection_count(ServerHandle server);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_destroy(IntPtr server);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_stats(ServerHandle server, ref Statistics stats);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_listen_address(ServerHandle server, byte[] text, UIntPtr cap,
                                                       out ushort port);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_connect(ServerHandle server, byte[] address, ushort port, out ulong id);
        // 1.1
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_set_context(ServerHandle server, ulong id, IntPtr context);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_get_context(ServerHandle server, ulong id, out IntPtr context);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_pause_recv(ServerHandle server, ulong id);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_resume_recv(ServerHandle server, ulong id);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_set_drain_mark(ServerHandle server, ulong id, ulong mark);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_set_idle_timeout(ServerHandle server, ulong id, uint timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_stop_graceful(ServerHandle server, uint timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern ulong iocp_refused_count(ServerHandle server);

        // The same two on the raw handle a callback receives: valid there
        // even while Dispose (iocp_destroy) runs and the SafeHandle is closed.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "iocp_get_context")]
        internal static extern int GetContextRaw(IntPtr server, ulong id, out IntPtr context);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, EntryPoint = "iocp_set_context")]
        internal static extern int SetContextRaw(IntPtr server, ulong id, IntPtr context);
    }

    /// <summary>
    /// The iocp_server handle. ReleaseHandle calls iocp_destroy, so a server
    /// that is never disposed is still destroyed by the finalizer. It also
    /// holds the callback delegates: they stay reachable (and their native
    /// thunks valid) until the library has stopped calling them.
    /// </summary>
    internal sealed class ServerHandle : SafeHandle
    {
        internal object KeepAlive;
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

    /// <summary>Version and error text of the loaded library.</summary>
    public static class IocpLibrary
    {
        // The header version this binding mirrors (IOCP_VERSION_*).
        public const int VersionMajor = 1;
        public const int VersionMinor = 1;
        public const int VersionPatch = 0;
        public const uint VersionNumber = (VersionMajor << 16) | (VersionMinor << 8) | VersionPatch;

        // Limits of the 1.1 controls (IOCP_MAX_TIMEOUT_MS, IOCP_MAX_KEEPALIVE_MS).
        public const int MaxTimeoutMs = 2147483647;
        public const int MaxKeepaliveMs = 32767000;
        // IOCP_LOG_QUEUE_MAX: queue mode's LOG events waiting at once at most.
        public const int LogQueueMax = 16;

        /// <summary>IOCP_VERSION_COMPATIBLE: same major, equal or newer minor.</summary>
        public static bool IsCompatible(uint loaded)
        {
            return ((loaded >> 16) & 0xff) == VersionMajor && (loaded & 0xffff00u) >= (VersionNumber & 0xffff00u);
        }

        public static uint Version() { return NativeMethods.iocp_version(); }

        public static string VersionString() { return Marshal.PtrToStringAnsi(NativeMethods.iocp_version_string()); }

        public static string StrError(int code) { return Marshal.PtrToStringAnsi(NativeMethods.iocp_strerror(code)); }

        public static string ErrName(int code) { return Marshal.PtrToStringAnsi(NativeMethods.iocp_err_name(code)); }

        private static readonly object Lock = new object();
        private static bool checkedOk;

        /// <summary>
        /// Loads the library and checks its version and the struct layouts;
        /// throws IocpLibraryException with a readable message otherwise.
        /// IocpServer calls it; call it early to fail fast.
        /// </summary>
        public static void EnsureCompatible()
        {
            lock (Lock)
            {
                if (checkedOk) return;
                uint loaded;
                string text;
                try
                {
                    loaded = NativeMethods.iocp_version();
                    text = VersionString();
                }
                catch (DllNotFoundException e)
                {
                    throw new IocpLibraryException("cannot load the iocpsrv library (iocpsrv.dll next to the program " +
                        "or on PATH on Windows, libiocpsrv.so on LD_LIBRARY_PATH elsewhere): " + e.Message, e);
                }
                catch (EntryPointNotFoundException e)
                {
                    throw new IocpLibraryException("the loaded iocpsrv library lacks a function: " + e.Message, e);
                }
                if (!IsCompatible(loaded))
                    throw new IocpLibraryException("iocpsrv " + text + " loaded, but this program needs " +
                        VersionMajor + "." + VersionMinor + " or newer " + VersionMajor + ".x", null);
                CheckLayout();
                checkedOk = true;
            }
        }

        // The C layouts of Windows x86/x64 and Linux x86_64 (see the comments
        // on the structs); a mismatch here would corrupt memory in the
        // library, so refuse to go on. (Linux i386, where uint64_t is
        // 4-aligned, is not a target.)
        private static void CheckLayout()
        {
            int p = IntPtr.Size;
            Expect("iocp_config", Marshal.SizeOf(typeof(NativeMethods.Config)), 96);
            Expect("iocp_config.delivery", (int)Marshal.OffsetOf(typeof(NativeMethods.Config), "Delivery"), 88);
            Expect("iocp_event", Marshal.SizeOf(typeof(NativeMethods.Event)), 40);
            Expect("iocp_event.id", (int)Marshal.OffsetOf(typeof(NativeMethods.Event), "Id"), 8);
            Expect("iocp_event.len", (int)Marshal.OffsetOf(typeof(NativeMethods.Event), "Len"), 24);
            Expect("iocp_event.context", (int)Marshal.OffsetOf(typeof(NativeMethods.Event), "Context"), 32);
            Expect("iocp_config.bind_address", (int)Marshal.OffsetOf(typeof(NativeMethods.Config), "BindAddress"), 8);
            Expect("iocp_config.threads", (int)Marshal.OffsetOf(typeof(NativeMethods.Config), "Threads"), 8 + p);
            Expect("iocp_config.max_send_queue", (int)Marshal.OffsetOf(typeof(NativeMethods.Config), "MaxSendQueue"), 32);
            Expect("iocp_config.nodelay", (int)Marshal.OffsetOf(typeof(NativeMethods.Config), "NoDelay"), 40);
            Expect("iocp_config.dual_stack", (int)Marshal.OffsetOf(typeof(NativeMethods.Config), "DualStack"), 48);
            Expect("iocp_callbacks", Marshal.SizeOf(typeof(NativeMethods.Callbacks)), 8 + 8 * p);
            Expect("iocp_callbacks.on_log", (int)Marshal.OffsetOf(typeof(NativeMethods.Callbacks), "OnLog"), 8 + 5 * p);
            Expect("iocp_config.idle_timeout_ms", (int)Marshal.OffsetOf(typeof(NativeMethods.Config), "IdleTimeoutMs"), 56);
            Expect("iocp_config.drain_mark", (int)Marshal.OffsetOf(typeof(NativeMethods.Config), "DrainMark"), 80);
            Expect("iocp_callbacks.on_drain", (int)Marshal.OffsetOf(typeof(NativeMethods.Callbacks), "OnDrain"), 8 + 7 * p);
            Expect("iocp_callbacks.on_connect", (int)Marshal.OffsetOf(typeof(NativeMethods.Callbacks), "OnConnect"), 8);
        }

        private static void Expect(string what, int got, int want)
        {
            if (got != want)
                throw new IocpLibraryException("struct layout mismatch: " + what + " is " + got + ", C has " + want, null);
        }
    }

    public delegate bool ConnectHandler(IocpServer server, ulong id, string address, ushort port);
    public delegate void DataHandler(IocpServer server, ulong id, byte[] data);
    public delegate void DataSegmentHandler(IocpServer server, ulong id, ArraySegment<byte> data);
    public delegate void SentHandler(IocpServer server, ulong id, ulong bytes);
    public delegate void PeerClosedHandler(IocpServer server, ulong id);
    public delegate void DisconnectHandler(IocpServer server, ulong id, IocpReason reason);
    public delegate void DrainHandler(IocpServer server, ulong id, ulong queued);
    public delegate void ErrorHandler(IocpServer server, string callback, Exception error);
    public delegate void LogHandler(IocpServer server, IocpLogLevel level, int code, string text);
    public delegate void ConnectFailedHandler(IocpServer server, ulong id, int error);

    /// <summary>Configuration and callbacks; 0 / null keeps the library default.</summary>
    public class IocpServerOptions
    {
        public ushort Port = 50000;           // 0 picks a free port
        public string Bind = "127.0.0.1";
        public uint Threads;                  // 0 = one per processor (queue mode: one fewer, at least 1)
        public uint Backlog;
        public uint AcceptsPosted;
        public uint RecvBufferSize;
        public ulong MaxSendQueue;
        public bool NoDelay = true;           // TCP_NODELAY on accepted connections
        public IocpDelivery Mode = IocpDelivery.Queue;
        public int Batch = 256;               // queue mode: events per iocp_wait
        /// <summary>With an IPv6 Bind such as "::", take IPv4 connections too (IPV6_V6ONLY off).</summary>
        public bool DualStack;
        // 1.1 controls, all off by default (see api/iocpsrv.h).
        /// <summary>End a connection silent this long (IocpReason.IdleTimeout); 0 = never.</summary>
        public uint IdleTimeoutMs;
        /// <summary>Refuse connections past this many (counted in RefusedCount); 0 = no limit.</summary>
        public uint MaxConnections;
        /// <summary>TCP keep-alive; the times in ms, 0 = the system's value.</summary>
        public bool KeepAlive;
        public uint KeepAliveIdleMs;
        public uint KeepAliveIntervalMs;
        /// <summary>OnDrain fires when a queue falls to this many bytes (0 = empty).</summary>
        public ulong DrainMark;

        /// <summary>Return false (or throw) to refuse the connection.</summary>
        public ConnectHandler OnConnect;
        /// <summary>The array is a copy: keep it as long as you like.</summary>
        public DataHandler OnData;
        /// <summary>
        /// Queue mode, instead of OnData: the bytes without a copy of their
        /// own, in a buffer reused after the handler returns (copy what you
        /// keep). Send(id, segment) sends straight from it.
        /// </summary>
        public DataSegmentHandler OnDataSegment;
        public SentHandler OnSent;
        /// <summary>When null the library sends what is queued, then closes.</summary>
        public PeerClosedHandler OnPeerClosed;
        public DisconnectHandler OnDisconnect;
        /// <summary>The queue fell to the drain mark: produce again (1.1).</summary>
        public DrainHandler OnDrain;
        /// <summary>A callback threw; default: print to standard error.</summary>
        public ErrorHandler OnError;
        /// <summary>
        /// An outbound connection from Connect could not be established: its
        /// only callback (error: IocpErrors.EConnRefused, ETimedOut, EUnreach, EClosed, ...).
        /// </summary>
        public ConnectFailedHandler OnConnectFailed;
        /// <summary>
        /// What the library worked around or could not do: failed accepts,
        /// running out of descriptors, a worker leaving. Queue mode: on the
        /// drainer like every handler (LOG events). Callback mode: may run on
        /// several threads at once, and on the constructing thread while the
        /// constructor runs (do not use the server there).
        /// </summary>
        public LogHandler OnLog;
    }

    /// <summary>
    /// One server. Callbacks run on library worker threads; exceptions they
    /// throw are caught before returning to native code and passed to
    /// OnError (an exception in OnConnect refuses the connection). Dispose()
    /// destroys the server: every open connection gets OnDisconnect(Destroy)
    /// before it returns and no callback runs afterwards.
    /// </summary>
    public sealed class IocpServer : IDisposable
    {
        private readonly ServerHandle handle = new ServerHandle();
        private readonly IocpServerOptions options;
        // Set once iocp_create has returned; callbacks that fire before that
        // (a client connecting at once) wait for it so they can use Send.
        // A monitor, not a WaitHandle: no finalizer of its own that could run
        // before ServerHandle's during an undisposed server's collection.
        private readonly object createLock = new object();
        private volatile bool created;

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
            if (!queue)
            {
                onConnect = ConnectTrampoline;
                callbacks.OnConnect = Marshal.GetFunctionPointerForDelegate(onConnect);
            }
            if (options.OnData != null && !queue)
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

            IntPtr bind = Marshal.StringToHGlobalAnsi(options.Bind ?? "127.0.0.1");
            int rc;
            try
            {
                config.BindAddress = bind;   // copied by iocp_create
                IntPtr server;
                // Queue mode passes no callbacks.
                rc = queue
                    ? NativeMethods.iocp_create(ref config, IntPtr.Zero, IntPtr.Zero, out server)
                    : NativeMethods.iocp_create(ref config, ref callbacks, IntPtr.Zero, out server);
                if (rc == 0) handle.Set(server);
            }
            finally
            {
                Marshal.FreeHGlobal(bind);
                lock (createLock)
                {
                    created = true;
                    Monitor.PulseAll(createLock);
                }
            }
            if (rc != 0)
                throw new IocpException(rc, "cannot listen on " + options.Bind + " port " + options.Port);
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
        /// returns it until OnDisconnect has returned (there included). The
        /// library holds a GCHandle, freed when the connection ends.
        /// </summary>
        public void SetContext(ulong id, object context)
        {
            IntPtr old;
            bool hadOld = NativeMethods.iocp_get_context(handle, id, out old) == 0 && old != IntPtr.Zero;
            IntPtr p = context != null ? GCHandle.ToIntPtr(GCHandle.Alloc(context)) : IntPtr.Zero;
            int rc = NativeMethods.iocp_set_context(handle, id, p);
            if (rc != 0)
            {
                if (p != IntPtr.Zero) GCHandle.FromIntPtr(p).Free();
                throw new IocpException(rc, "iocp_set_context");
            }
            if (hadOld && old != p) GCHandle.FromIntPtr(old).Free();
        }

        /// <summary>The object set with SetContext, or null.</summary>
        public object GetContext(ulong id)
        {
            IntPtr p;
            Check(NativeMethods.iocp_get_context(handle, id, out p), "iocp_get_context");
            return p != IntPtr.Zero ? GCHandle.FromIntPtr(p).Target : null;
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

        // In the connection's last callback: the library hands the pointer
        // back without a lookup; nobody can reach it afterwards.
        private static void ReleaseContext(IntPtr server, ulong id)
        {
            IntPtr p;
            if (NativeMethods.GetContextRaw(server, id, out p) == 0 && p != IntPtr.Zero)
            {
                // Cleared where the id still resolves (a refusal); stale otherwise.
                NativeMethods.SetContextRaw(server, id, IntPtr.Zero);
                GCHandle.FromIntPtr(p).Free();
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

        // ---- Queue mode: the drain loop, on this wrapper's own thread ----

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
                        finally { FreeContext(e.Context); }   // the last event carries it
                        break;
                    case NativeMethods.EventConnectFailed:
                        where = "OnConnectFailed";
                        try { if (options.OnConnectFailed != null) options.OnConnectFailed(this, e.Id, e.Value); }
                        finally { FreeContext(e.Context); }
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
            ReleaseContext(handle.DangerousGetHandle(), id);
            NativeMethods.iocp_close(handle, id);
        }

        private static void FreeContext(ulong context)
        {
            if (context != 0) GCHandle.FromIntPtr(new IntPtr((long)context)).Free();
        }

        private void OnQueuedData(ulong id, IntPtr data, int len)
        {
            if (options.OnDataSegment != null)
            {
                if (dataBuffer.Length < len) dataBuffer = new byte[len];
                Marshal.Copy(data, dataBuffer, 0, len);
                options.OnDataSegment(this, id, new ArraySegment<byte>(dataBuffer, 0, len));
            }
            else if (options.OnData != null)
            {
                var bytes = new byte[len];
                Marshal.Copy(data, bytes, 0, len);
                options.OnData(this, id, bytes);
            }
        }

        // ---- Trampolines: native -> managed; no exception gets through ----

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
                    if (refuse != 0) ReleaseContext(server, id);
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
                    options.OnData(this, id, bytes);
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
                    ReleaseContext(server, id);
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
                    ReleaseContext(server, id);
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
