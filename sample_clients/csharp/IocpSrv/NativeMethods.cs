// The raw C API: the structs, event types and callback types of
// api/iocpsrv.h that the binding uses, cdecl, blittable structs. The
// functions: NativeMethods.DllImport.cs (netstandard2.0 and Mono) and
// NativeMethods.LibraryImport.cs (net8.0: source-generated stubs, function
// pointers instead of delegates). Nothing here is public; IocpServer and
// IocpLibrary are the interface.
using System;
using System.Runtime.InteropServices;

namespace IocpSrv
{
    /// <summary>The raw C API. Mirrors api/iocpsrv.h; see there for semantics.</summary>
    internal static partial class NativeMethods
    {
        private const string Lib = "iocpsrv";

#if !NET8_0_OR_GREATER
        // The callback types, as delegates (net8.0 uses function pointers).
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
#endif

        // struct iocp_callbacks: 72 bytes on 64-bit, 40 on 32-bit. Function
        // pointers are kept as IntPtr (from GetFunctionPointerForDelegate, or a
        // function pointer on net8.0) so
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
            // 1.2, TLS
            public IntPtr TlsPkcs12;
            public uint TlsPkcs12Len;
            public uint TlsMinVersion;
            public IntPtr TlsPassword;
            public IntPtr TlsAlpn;
            public uint TlsHandshakeTimeoutMs;
            public uint Reserved5;
        }

        // enum iocp_tls_version (1.2)
        internal enum IocpTlsVersion : uint
        {
            Tls12 = 0x0303,
            Tls13 = 0x0304,
        }

        // struct iocp_tls_client (1.2)
        [StructLayout(LayoutKind.Sequential)]
        internal struct TlsClient
        {
            public uint Size;
            public uint NoVerify;
            public IntPtr ServerName;
            public IntPtr CaPem;
            public uint CaPemLen;
            public uint MinVersion;
            public IntPtr Alpn;
            public uint HandshakeTimeoutMs;
            public uint Reserved;
        }

        // struct iocp_tls_info (1.2)
        [StructLayout(LayoutKind.Sequential)]
        internal struct TlsInfo
        {
            public uint Size;
            public uint Version;
            [MarshalAs(UnmanagedType.ByValArray, SizeConst = 64)]
            public byte[] Cipher;
            [MarshalAs(UnmanagedType.ByValArray, SizeConst = 256)]
            public byte[] Alpn;
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
            public ulong TlsHandshakes;          // 1.2
            public ulong TlsHandshakeFailures;
            public ulong TlsHandshakeTimeouts;
        }
    }
}
