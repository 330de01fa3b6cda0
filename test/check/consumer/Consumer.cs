// A .NET program as a user of the IocpSrv NuGet package writes it, the
// package taken with `dotnet add package` (check_nupkg.py), nothing copied
// by hand. Echoes a few bytes through a server on port 0; exits 0 and
// prints "ok" on success.
using System;
using System.Net.Sockets;
using System.Text;
using IocpSrv;

public static class Consumer
{
    public static int Main(string[] args)
    {
        string expected = args[0];
        if (IocpLibrary.VersionString() != expected)
        {
            Console.WriteLine("native library is " + IocpLibrary.VersionString() + ", package is " + expected);
            return 2;
        }
        Version managed = typeof(IocpServer).Assembly.GetName().Version;
        if (managed.ToString() != expected + ".0")
        {
            Console.WriteLine("IocpSrv.Net.dll is version " + managed + ", package is " + expected);
            return 3;
        }
        var options = new IocpServerOptions { Port = 0 };
        options.OnData = (server, id, data) => server.Send(id, data);
        using (var server = new IocpServer(options))
        using (var client = new TcpClient("127.0.0.1", server.Port))
        {
            client.ReceiveTimeout = 10000;
            NetworkStream stream = client.GetStream();
            byte[] hello = Encoding.ASCII.GetBytes("nuget");
            stream.Write(hello, 0, hello.Length);
            var got = new byte[hello.Length];
            int n = 0;
            while (n < got.Length)
            {
                int r = stream.Read(got, n, got.Length - n);
                if (r == 0) break;
                n += r;
            }
            if (Encoding.ASCII.GetString(got, 0, n) != "nuget")
            {
                Console.WriteLine("echo returned " + n + " bytes");
                return 4;
            }
        }
        Console.WriteLine("ok");
        return 0;
    }
}
