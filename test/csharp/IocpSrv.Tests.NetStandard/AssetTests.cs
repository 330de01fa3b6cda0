// The suites here run over the binding's netstandard2.0 assembly, not the
// net8.0 one .NET would pick on its own.
using System.Runtime.Versioning;
using Xunit;

namespace IocpSrv.Tests;

public class AssetTests
{
    [Fact]
    public void TheBindingIsTheNetStandard20Assembly()
    {
        var target = typeof(IocpListener).Assembly.GetCustomAttributes(typeof(TargetFrameworkAttribute), false)
            .Cast<TargetFrameworkAttribute>().Single();
        Assert.Equal(".NETStandard,Version=v2.0", target.FrameworkName);
        // Its Task API's interfaces come from Microsoft.Bcl.AsyncInterfaces,
        // forwarded to .NET's own at run time.
        Assert.Contains(typeof(IocpListener).Assembly.GetReferencedAssemblies(),
                        a => a.Name == "Microsoft.Bcl.AsyncInterfaces");
        Assert.True(typeof(IAsyncDisposable).IsAssignableFrom(typeof(IocpListener)));
    }
}
