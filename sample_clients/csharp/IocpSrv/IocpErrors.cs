// The library's error codes, as IocpException.Code and the int error of
// OnConnectFailed carry them; IocpLibrary.ErrName/StrError name them.

namespace IocpSrv
{
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
        public const int ETls = -21;          // 1.2, TLS
        public const int EPkcs12 = -22;
        public const int EPassword = -23;
        public const int ENokey = -24;
        public const int ECertverify = -25;
        public const int ENotls = -26;
    }
}
