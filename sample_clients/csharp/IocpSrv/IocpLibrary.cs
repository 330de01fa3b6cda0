// The loaded native library: its version, error texts, and the check that
// it is one this binding can use (version and struct layouts).
using System;
using System.Runtime.InteropServices;

namespace IocpSrv
{
    /// <summary>Version and error text of the loaded library.</summary>
    public static class IocpLibrary
    {
        // The header version this binding mirrors (IOCP_VERSION_*).
        public const int VersionMajor = 1;
        public const int VersionMinor = 2;
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
                    throw new IocpLibraryException("cannot load the iocpsrv library: the IocpSrv NuGet package has it " +
                        "under runtimes/<rid>/native/ (linux-x64, win-x64, win-x86; .NET loads it from there, and for " +
                        ".NET Framework and Mono projects the package copies it beside the program); otherwise put " +
                        "iocpsrv.dll next to the program or on PATH on Windows, libiocpsrv.so on LD_LIBRARY_PATH " +
                        "elsewhere: " + e.Message, e);
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
            // 1.2 appended three pointers and four uint32s (TLS); 8-aligned.
            Expect("iocp_config", Marshal.SizeOf(typeof(NativeMethods.Config)), (96 + 3 * p + 16 + 7) / 8 * 8);
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
}
