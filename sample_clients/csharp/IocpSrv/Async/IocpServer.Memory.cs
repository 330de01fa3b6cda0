// IocpServer.Send for spans (every target): the bytes are copied into the
// library's queue during the call, so any memory will do.
#nullable enable
using System;
using System.Runtime.InteropServices;

namespace IocpSrv
{
    public sealed partial class IocpServer
    {
        /// <summary>Queues a copy of the bytes. Throws IocpException (e.g. EQueueFull: nothing queued).</summary>
        public unsafe void Send(ulong id, ReadOnlySpan<byte> data)
        {
            fixed (byte* p = data)
            {
                Check(NativeMethods.iocp_send(handle, id, (IntPtr)p, (UIntPtr)(uint)data.Length), "iocp_send");
            }
        }

        /// <summary>Like <see cref="Send(ulong, ReadOnlySpan{byte})"/>, returning the code instead of throwing.</summary>
        internal unsafe int TrySend(ulong id, ReadOnlySpan<byte> data)
        {
            fixed (byte* p = data)
            {
                return NativeMethods.iocp_send(handle, id, (IntPtr)p, (UIntPtr)(uint)data.Length);
            }
        }

        internal int TryQueued(ulong id, out ulong queued) => NativeMethods.iocp_queued(handle, id, out queued);
        internal int TryPause(ulong id) => NativeMethods.iocp_pause_recv(handle, id);
        internal int TryResume(ulong id) => NativeMethods.iocp_resume_recv(handle, id);
        internal int TryShutdown(ulong id) => NativeMethods.iocp_shutdown(handle, id);
        internal int TryClose(ulong id) => NativeMethods.iocp_close(handle, id);
    }
}
