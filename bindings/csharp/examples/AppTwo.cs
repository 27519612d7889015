// "App Two": prints each message received on shmkit channel NAME as a line, until
// every sender is gone (Disconnected) — or none came within the timeout.
//
// Start it before AppOne.
//
//   mcs -nologo -r:target/cs/Shmkit.dll -r:System.Core -out:target/cs/AppTwo.exe bindings/csharp/examples/AppTwo.cs
//   (Shmkit.dll and LD_LIBRARY_PATH: docs/languages/csharp.md, "Your first message")
//   mono target/cs/AppTwo.exe NAME [TIMEOUT_SECONDS]   (default 30)
using System;
using System.Text;
using Shmkit;

static class AppTwo
{
    static int Main(string[] args)
    {
        if (args.Length < 1)
        {
            Console.Error.WriteLine("usage: AppTwo NAME [TIMEOUT_SECONDS]");
            return 2;
        }
        var timeout = TimeSpan.FromSeconds(args.Length > 1 ? double.Parse(args[1]) : 30);
        try
        {
            using (var rx = Receiver.Connect(args[0]))
            {
                Console.Error.WriteLine("AppTwo: ready");
                var buf = new byte[64 * 1024];
                for (;;)
                {
                    int n;
                    try { n = rx.Receive(buf, timeout); }
                    catch (ShmkitException e) when (e.Status == Status.Disconnected) { break; }
                    catch (ShmkitException e) when (e.Status == Status.BufferTooSmall)
                    {
                        buf = new byte[e.Count];     // the line stayed queued: take it now
                        n = rx.Receive(buf, timeout);
                    }
                    Console.WriteLine(Encoding.UTF8.GetString(buf, 0, n));
                }
            }
            return 0;
        }
        catch (ShmkitException e)
        {
            Console.Error.WriteLine("AppTwo: {0}: {1}", e.Status, e.Message);
            return 1;
        }
    }
}
