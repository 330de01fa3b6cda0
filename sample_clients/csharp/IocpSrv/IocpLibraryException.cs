// The exception of IocpLibrary.EnsureCompatible: the native library cannot
// be used at all.
using System;

namespace IocpSrv
{
    /// <summary>The library is missing, lacks a function, or is incompatible.</summary>
    public class IocpLibraryException : Exception
    {
        public IocpLibraryException(string message, Exception inner) : base(message, inner) { }
    }
}
