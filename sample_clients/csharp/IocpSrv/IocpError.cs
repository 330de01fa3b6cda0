// The library's error codes as an enum (IocpException.Error); the same
// values as the IocpErrors constants.

namespace IocpSrv
{
    /// <summary>The library's error codes (enum iocp_errno); never renumbered.</summary>
    public enum IocpError
    {
        Ok = 0,
        EInval = -1,
        ENoMem = -2,
        ENotFound = -3,
        EShutdown = -4,
        EQueueFull = -5,
        EAddrInUse = -6,
        EAddrNotAvail = -7,
        EVersion = -8,
        EInCallback = -9,
        ESystem = -10,
        EAcces = -11,
        EAfNoSupport = -12,
        EClosed = -13,
        EMode = -14,
        EBusy = -15,
        EConnRefused = -16,
        ETimedOut = -17,
        EUnreach = -18,
        EMFile = -19,
        EStopped = -20,
    }
}
