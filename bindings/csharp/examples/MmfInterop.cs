// .NET's MemoryMappedFile and shmkit raw segments.
//
// On Linux, Mono and .NET cannot open a *named* memory map across processes
// (MemoryMappedFile.OpenExisting is Windows-only there). A shmkit raw segment is
// a POSIX shared-memory object, which Linux shows as the file /dev/shm/<name>:
// MemoryMappedFile.CreateFromFile on that path maps the very same memory. On
// Windows, a raw segment is a named section: MemoryMappedFile.OpenExisting(name)
// opens it directly.
//
//   mcs -nologo -r:target/cs/Shmkit.dll -r:System.Core -out:target/cs/MmfInterop.exe bindings/csharp/examples/MmfInterop.cs
//   (Shmkit.dll and LD_LIBRARY_PATH: docs/languages/csharp.md, "Your first message")
//   mono target/cs/MmfInterop.exe NAME   (creates raw segment /NAME; leaves it for the caller to check and remove)
using System;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Text;
using Shmkit;

static class MmfInterop
{
    static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: MmfInterop NAME");
            return 2;
        }
        string name = args[0];
        bool windows = Environment.OSVersion.Platform == PlatformID.Win32NT;
        string osName = windows ? name : "/" + name;
        using (var seg = SharedMemory.CreateRaw(osName, 4096))
        {
            seg.Write(0, Encoding.ASCII.GetBytes("written by shmkit"));

            MemoryMappedFile mmf;
            if (windows)
            {
                mmf = MemoryMappedFile.OpenExisting(name);
            }
            else
            {
                try
                {
                    MemoryMappedFile.OpenExisting(name).Dispose();
                    Console.WriteLine("OpenExisting unexpectedly worked on this platform");
                }
                catch (Exception e) when (e is PlatformNotSupportedException || e is FileNotFoundException || e is IOException || e is NotSupportedException)
                {
                    Console.WriteLine("OpenExisting by name: not on this platform ({0})", e.GetType().Name);
                }
                mmf = MemoryMappedFile.CreateFromFile("/dev/shm/" + name, FileMode.Open, null, 4096, MemoryMappedFileAccess.ReadWrite);
            }
            using (mmf)
            using (var view = mmf.CreateViewAccessor(0, 4096))
            {
                var seen = new byte[17];
                view.ReadArray(0, seen, 0, seen.Length);
                Console.WriteLine("MemoryMappedFile read: {0}", Encoding.ASCII.GetString(seen));
                var reply = Encoding.ASCII.GetBytes("written by .NET");
                view.WriteArray(100, reply, 0, reply.Length);
                view.Flush();
            }
            var back = new byte[15];
            seg.Read(100, back);
            Console.WriteLine("shmkit read: {0}", Encoding.ASCII.GetString(back));
            return Encoding.ASCII.GetString(back) == "written by .NET" ? 0 : 1;
        }
    }
}
