// The C API's functions on net8.0: LibraryImport (stubs generated at build
// time, no runtime marshaling) with the cdecl convention. The callbacks are
// static UnmanagedCallersOnly methods (IocpServer.Entry.cs) passed as
// function pointers: no delegate for the library to keep alive.
#if NET8_0_OR_GREATER
using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace IocpSrv
{
    internal static partial class NativeMethods
    {
        // Functions returning `const char *` to static storage are declared
        // IntPtr: a string return type would make the marshaler free it.
        [LibraryImport(Lib, EntryPoint = "iocp_version")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial uint iocp_version();

        [LibraryImport(Lib, EntryPoint = "iocp_version_string")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial IntPtr iocp_version_string();

        [LibraryImport(Lib, EntryPoint = "iocp_strerror")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial IntPtr iocp_strerror(int err);

        [LibraryImport(Lib, EntryPoint = "iocp_err_name")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial IntPtr iocp_err_name(int err);

        [LibraryImport(Lib, EntryPoint = "iocp_config_init")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_config_init(ref Config config, uint size);

        [LibraryImport(Lib, EntryPoint = "iocp_create")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_create(ref Config config, ref Callbacks callbacks, IntPtr user,
                                               out IntPtr server);

        // Queue mode: callbacks NULL.
        [LibraryImport(Lib, EntryPoint = "iocp_create")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_create(ref Config config, IntPtr callbacks, IntPtr user,
                                                     out IntPtr server);

        // events: a pinned Event[] (the drain loop pins its array once, so
        // no call marshals or copies it).
        [LibraryImport(Lib, EntryPoint = "iocp_wait")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_wait(ServerHandle server, IntPtr events, uint max, int timeoutMs);

        [LibraryImport(Lib, EntryPoint = "iocp_wake")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_wake(ServerHandle server);

        [LibraryImport(Lib, EntryPoint = "iocp_stop")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_stop(ServerHandle server);

        // A byte[] is pinned by the marshaler for the call (no copy).
        [LibraryImport(Lib, EntryPoint = "iocp_send")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_send(ServerHandle server, ulong id, byte[] data, UIntPtr len);

        [LibraryImport(Lib, EntryPoint = "iocp_send")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_send(ServerHandle server, ulong id, IntPtr data, UIntPtr len);

        [LibraryImport(Lib, EntryPoint = "iocp_shutdown")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_shutdown(ServerHandle server, ulong id);

        [LibraryImport(Lib, EntryPoint = "iocp_close")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_close(ServerHandle server, ulong id);

        [LibraryImport(Lib, EntryPoint = "iocp_queued")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_queued(ServerHandle server, ulong id, out ulong queued);

        [LibraryImport(Lib, EntryPoint = "iocp_port")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial ushort iocp_port(ServerHandle server);

        [LibraryImport(Lib, EntryPoint = "iocp_connection_count")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial ulong iocp_connection_count(ServerHandle server);

        [LibraryImport(Lib, EntryPoint = "iocp_destroy")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_destroy(IntPtr server);

        [LibraryImport(Lib, EntryPoint = "iocp_stats")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_stats(ServerHandle server, ref Statistics stats);

        [LibraryImport(Lib, EntryPoint = "iocp_listen_address")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_listen_address(ServerHandle server, [In, Out] byte[] text, UIntPtr cap,
                                                       out ushort port);

        // 1.2
        [LibraryImport(Lib, EntryPoint = "iocp_local_address")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_local_address(ServerHandle server, ulong id, [In, Out] byte[] text, UIntPtr cap,
                                                      out ushort port);

        [LibraryImport(Lib, EntryPoint = "iocp_connect")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_connect(ServerHandle server, byte[] address, ushort port, out ulong id);
        // 1.1
        [LibraryImport(Lib, EntryPoint = "iocp_set_context")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_set_context(ServerHandle server, ulong id, IntPtr context);

        [LibraryImport(Lib, EntryPoint = "iocp_get_context")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_get_context(ServerHandle server, ulong id, out IntPtr context);

        [LibraryImport(Lib, EntryPoint = "iocp_pause_recv")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_pause_recv(ServerHandle server, ulong id);

        [LibraryImport(Lib, EntryPoint = "iocp_resume_recv")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_resume_recv(ServerHandle server, ulong id);

        [LibraryImport(Lib, EntryPoint = "iocp_set_drain_mark")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_set_drain_mark(ServerHandle server, ulong id, ulong mark);

        [LibraryImport(Lib, EntryPoint = "iocp_set_idle_timeout")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_set_idle_timeout(ServerHandle server, ulong id, uint timeoutMs);

        [LibraryImport(Lib, EntryPoint = "iocp_stop_graceful")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_stop_graceful(ServerHandle server, uint timeoutMs);

        [LibraryImport(Lib, EntryPoint = "iocp_refused_count")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial ulong iocp_refused_count(ServerHandle server);
        // 1.2, TLS. info: a struct iocp_tls_info in unmanaged memory
        // (IocpTlsInfo.Read): its char arrays are not blittable.
        [LibraryImport(Lib, EntryPoint = "iocp_connect_tls")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_connect_tls(ServerHandle server, byte[] address, ushort port,
                                                     ref TlsClient tls, out ulong id);

        [LibraryImport(Lib, EntryPoint = "iocp_tls_get_info")]
        [UnmanagedCallConv(CallConvs = new[] { typeof(CallConvCdecl) })]
        internal static partial int iocp_tls_get_info(ServerHandle server, ulong id, IntPtr info);
    }
}
#endif
