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
        /// <summary>TLS handshake or record failed (1.2).</summary>
        ETls = -21,
        /// <summary>Not a usable PKCS#12 blob.</summary>
        EPkcs12 = -22,
        /// <summary>Wrong PKCS#12 password.</summary>
        EPassword = -23,
        /// <summary>Certificate without its private key.</summary>
        ENoKey = -24,
        /// <summary>Peer certificate verification failed.</summary>
        ECertVerify = -25,
        /// <summary>Not a TLS connection.</summary>
        ENoTls = -26,
    }
}
