// The exception every failed call of the binding throws with the library's
// code (IocpErrors) and its text.
using System;

namespace IocpSrv
{
    /// <summary>A negative return code of the library.</summary>
    public class IocpException : Exception
    {
        public int Code { get; private set; }
        public string Name { get; private set; }
        /// <summary>The code as an enum.</summary>
        public IocpError Error { get { return (IocpError)Code; } }

        public IocpException(int code, string what)
            : base(what + ": " + IocpLibrary.StrError(code) + " (" + IocpLibrary.ErrName(code) + ", " + code + ")")
        {
            Code = code;
            Name = IocpLibrary.ErrName(code);
        }
    }
}
