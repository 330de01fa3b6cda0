// builder.WebHost.UseIocpSrv(): Kestrel on iocpsrv.
using System;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using IocpSrv.Kestrel;

namespace Microsoft.AspNetCore.Hosting
{
    /// <summary>Kestrel on the iocpsrv transport.</summary>
    public static class WebHostBuilderIocpExtensions
    {
        /// <summary>
        /// Serves Kestrel's IP endpoints with iocpsrv instead of
        /// System.Net.Sockets: <c>builder.WebHost.UseIocpSrv();</c>
        /// </summary>
        public static IWebHostBuilder UseIocpSrv(this IWebHostBuilder builder, Action<IocpTransportOptions>? configure = null)
        {
            return builder.ConfigureServices(services =>
            {
                services.AddSingleton<IocpConnectionListenerFactory>();
                services.AddSingleton<IConnectionListenerFactory>(sp => sp.GetRequiredService<IocpConnectionListenerFactory>());
                if (configure != null) services.Configure(configure);
            });
        }
    }
}
