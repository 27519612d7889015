// "App One": sends each line typed on standard input through shmkit channel NAME
// (the classic C# shared-memory writer, without fixed sizes or lost messages).
// Pair it with AppTwo, or any shmkit receiver (`shmkit recv NAME --follow`), started
// first: the channel is temporary, so lines sent before any receiver connects are lost
// if this program has exited by then. It prints nothing while you type (each line is
// sent on Enter), and "sent N lines" at the end of input (Ctrl-D).
//
//   mcs -nologo -r:target/cs/Shmkit.dll -r:System.Core -out:target/cs/AppOne.exe bindings/csharp/examples/AppOne.cs
//   (Shmkit.dll and LD_LIBRARY_PATH: docs/languages/csharp.md, "Your first message")
//   mono target/cs/AppOne.exe NAME
using System;
using System.Text;
using Shmkit;

static class AppOne
{
    static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: AppOne NAME");
            return 2;
        }
        try
        {
            using (var tx = Sender.Connect(args[0]))
            {
                string line;
                int sent = 0;
                while ((line = Console.ReadLine()) != null)
                {
                    tx.Send(Encoding.UTF8.GetBytes(line), TimeSpan.FromSeconds(10));
                    sent++;
                }
                Console.Error.WriteLine("AppOne: sent {0} lines", sent);
            }
            return 0;
        }
        catch (ShmkitException e)
        {
            Console.Error.WriteLine("AppOne: {0}: {1}", e.Status, e.Message);
            return 1;
        }
    }
}
