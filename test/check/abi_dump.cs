// Prints what the C# binding declares, as the runtime's marshaler sees it:
// every integer constant and enum member, and every sequential struct's size
// and field offsets/sizes (Marshal.SizeOf/OffsetOf, what P/Invoke uses).
// Compiled with the binding's sources (sample_clients/csharp/IocpSrv/*.cs);
// test/check/abi_mirror.py compares the output with the header's.
// It never loads the native library.
using System;
using System.Reflection;
using System.Runtime.InteropServices;

static class AbiDump
{
    const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static |
                             BindingFlags.Instance | BindingFlags.DeclaredOnly;

    static int FieldSize(FieldInfo f)
    {
        Type t = f.FieldType;
        if (t.IsArray)
        {
            // An inline array: [MarshalAs(UnmanagedType.ByValArray, SizeConst = N)].
            MarshalAsAttribute m = (MarshalAsAttribute)Attribute.GetCustomAttribute(f, typeof(MarshalAsAttribute));
            return m.SizeConst * Marshal.SizeOf(t.GetElementType());
        }
        if (typeof(Delegate).IsAssignableFrom(t)) return IntPtr.Size;
        if (t.IsEnum) t = Enum.GetUnderlyingType(t);
        return Marshal.SizeOf(t);
    }

    static void Main()
    {
        foreach (Type t in typeof(IocpSrv.IocpServer).Assembly.GetTypes())
        {
            if (t.Namespace != "IocpSrv") continue;
            if (t.IsEnum)
            {
                foreach (FieldInfo f in t.GetFields(BindingFlags.Public | BindingFlags.Static))
                    Console.WriteLine("const {0} {1} {2}", t.Name, f.Name,
                                      Convert.ToInt64(f.GetRawConstantValue()));
            }
            else if (t.IsValueType && !t.IsPrimitive && t.IsLayoutSequential)
            {
                Console.WriteLine("struct {0} {1}", t.Name, Marshal.SizeOf(t));
                foreach (FieldInfo f in t.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance))
                    Console.WriteLine("field {0} {1} {2} {3}", t.Name, f.Name,
                                      (long)Marshal.OffsetOf(t, f.Name), FieldSize(f));
            }
            else
            {
                foreach (FieldInfo f in t.GetFields(All))
                {
                    if (!f.IsLiteral) continue;
                    object v = f.GetRawConstantValue();
                    if (v is int || v is uint || v is long || v is ulong || v is short || v is ushort || v is byte || v is sbyte)
                        Console.WriteLine("const {0} {1} {2}", t.Name, f.Name, Convert.ToInt64(v));
                }
            }
        }
    }
}
