// "Hello, World!" as a minimal API, Kestrel serving it on iocpsrv.
//
//   KestrelHello [--port N] [--bind ADDR] [--threads N] [--transport iocpsrv|sockets]
//                [--no-coalesce]
//
// --port defaults to 8080 (0 picks a free port), --bind to 127.0.0.1,
// --transport to iocpsrv (sockets: Kestrel's own, for comparison);
// --no-coalesce turns the iocpsrv transport's CoalesceFlushes off (each
// flush of a response its own send, for comparison). Prints
// "listening on port N" when ready; Enter or the end of standard input stops
// it, and it prints what the iocpsrv listeners served.
using System.Net;
using IocpSrv.Kestrel;
using Microsoft.AspNetCore.Connections;

int port = 8080, threads = 0;
bool coalesce = true;
string bind = "127.0.0.1", transport = "iocpsrv";
for (int i = 0; i < args.Length; i++)
{
    string? val = i + 1 < args.Length ? args[i + 1] : null;
    if (args[i] == "--port" && int.TryParse(val, out port) && port is >= 0 and <= 65535) i++;
    else if (args[i] == "--threads" && int.TryParse(val, out threads) && threads >= 0) i++;
    else if (args[i] == "--bind" && val != null && IPAddress.TryParse(val, out _)) { bind = val; i++; }
    else if (args[i] == "--transport" && val is "iocpsrv" or "sockets") { transport = val!; i++; }
    else if (args[i] == "--no-coalesce") coalesce = false;
    else
    {
        Console.Error.WriteLine("usage: KestrelHello [--port N] [--bind ADDR] [--threads N] [--transport iocpsrv|sockets] [--no-coalesce]");
        return 2;
    }
}

var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
if (transport == "iocpsrv")
{
    builder.WebHost.UseIocpSrv(o =>
    {
        o.Listener.Threads = threads;
        o.Listener.CoalesceFlushes = coalesce;
    });
}
builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Parse(bind), port));

var app = builder.Build();
app.MapGet("/", () => "Hello, World!");
await app.StartAsync();

var bound = new Uri(app.Urls.First());
Console.WriteLine("listening on port " + bound.Port);
await Task.Run(Console.In.ReadLine);   // Enter, or null at end of input
await app.StopAsync();

if (app.Services.GetService<IConnectionListenerFactory>() is IocpConnectionListenerFactory iocp)
{
    ulong connections = 0, bytesIn = 0, bytesOut = 0;
    foreach (var l in iocp.Listeners)
    {
        var st = l.Statistics;
        connections += st.ConnectionsAccepted;
        bytesIn += st.BytesReceived;
        bytesOut += st.BytesSent;
    }
    Console.WriteLine($"served {connections} connections, {bytesIn} bytes in, {bytesOut} bytes out");
}
await app.DisposeAsync();
return 0;
