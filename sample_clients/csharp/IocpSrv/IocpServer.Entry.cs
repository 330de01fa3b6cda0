// net8.0: the library calls these static UnmanagedCallersOnly methods through
// plain function pointers (no delegates to keep alive); each finds its server
// through the `user` pointer, a weak GCHandle the server frees after
// iocp_destroy. A server already collected refuses connections and ignores
// the rest (its finalizer is destroying the native server).
#if NET8_0_OR_GREATER
using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace IocpSrv
{
    public sealed partial class IocpServer
    {
        private static IocpServer From(IntPtr user)
        {
            return user == IntPtr.Zero ? null : GCHandle.FromIntPtr(user).Target as IocpServer;
        }

        // The function pointers of the callbacks this server wants.
        private unsafe void SetCallbacks(ref NativeMethods.Callbacks callbacks)
        {
            callbacks.OnConnect = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, ulong, IntPtr, ushort, int>)&ConnectEntry;
            if (options.OnData != null || options.OnDataAsync != null)
                callbacks.OnData = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, ulong, IntPtr, UIntPtr, void>)&DataEntry;
            if (options.OnSent != null)
                callbacks.OnSent = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, ulong, ulong, void>)&SentEntry;
            if (options.OnPeerClosed != null)
                callbacks.OnPeerClosed = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, ulong, void>)&PeerClosedEntry;
            callbacks.OnDisconnect = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, ulong, int, void>)&DisconnectEntry;
            if (options.OnDrain != null)
                callbacks.OnDrain = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, ulong, ulong, void>)&DrainEntry;
            if (options.OnLog != null)
                callbacks.OnLog = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, int, int, IntPtr, void>)&LogEntry;
            callbacks.OnConnectFailed = (IntPtr)(delegate* unmanaged[Cdecl]<IntPtr, IntPtr, ulong, int, void>)&ConnectFailedEntry;
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static int ConnectEntry(IntPtr server, IntPtr user, ulong id, IntPtr address, ushort port)
        {
            IocpServer s = From(user);
            return s == null ? 1 : s.ConnectTrampoline(server, user, id, address, port);
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static void DataEntry(IntPtr server, IntPtr user, ulong id, IntPtr data, UIntPtr len)
        {
            IocpServer s = From(user);
            if (s != null) s.DataTrampoline(server, user, id, data, len);
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static void SentEntry(IntPtr server, IntPtr user, ulong id, ulong bytes)
        {
            IocpServer s = From(user);
            if (s != null) s.SentTrampoline(server, user, id, bytes);
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static void PeerClosedEntry(IntPtr server, IntPtr user, ulong id)
        {
            IocpServer s = From(user);
            if (s != null) s.PeerClosedTrampoline(server, user, id);
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static void DisconnectEntry(IntPtr server, IntPtr user, ulong id, int reason)
        {
            IocpServer s = From(user);
            if (s != null) s.DisconnectTrampoline(server, user, id, reason);
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static void DrainEntry(IntPtr server, IntPtr user, ulong id, ulong queued)
        {
            IocpServer s = From(user);
            if (s != null) s.DrainTrampoline(server, user, id, queued);
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static void LogEntry(IntPtr server, IntPtr user, int level, int code, IntPtr text)
        {
            IocpServer s = From(user);
            if (s != null) s.LogTrampoline(server, user, level, code, text);
        }

        [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
        private static void ConnectFailedEntry(IntPtr server, IntPtr user, ulong id, int error)
        {
            IocpServer s = From(user);
            if (s != null) s.ConnectFailedTrampoline(server, user, id, error);
        }
    }
}
#endif
