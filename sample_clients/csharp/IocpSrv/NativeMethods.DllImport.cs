// The C API's functions as DllImport declarations: netstandard2.0 (.NET
// Framework) and Mono. net8.0: NativeMethods.LibraryImport.cs.
#if !NET8_0_OR_GREATER
using System;
using System.Runtime.InteropServices;

namespace IocpSrv
{
    internal static partial class NativeMethods
    {
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

        // 1.2
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_local_address(ServerHandle server, ulong id, byte[] text, UIntPtr cap,
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
        // 1.2, TLS. info: a struct iocp_tls_info in unmanaged memory
        // (IocpTlsInfo.Read), so both imports stay blittable.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_connect_tls(ServerHandle server, byte[] address, ushort port,
                                                    ref TlsClient tls, out ulong id);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        internal static extern int iocp_tls_get_info(ServerHandle server, ulong id, IntPtr info);
    }
}
#endif
